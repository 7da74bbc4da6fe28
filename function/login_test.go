package function_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/clustertest"
)

var pullScope = url.Values{"scope": {"repository:openshift/ci:pull"}}

func TestRobotLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	before := time.Now().Add(-time.Second)
	resp, ans, body := e.login(robotUser, robotPass, url.Values{"scope": {"repository:openshift/ci:pull repository:openshift/other:push"}, "service": {e.host()}})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if ans.Token == "" || ans.Token != ans.AccessToken || ans.ExpiresIn != 3600 || ans.RefreshToken != "" {
		t.Errorf("answer %+v", ans)
	}
	issued, err := time.Parse(time.RFC3339, ans.IssuedAt)
	if err != nil || issued.Before(before.Truncate(time.Second)) || issued.After(time.Now()) {
		t.Errorf("issued_at %q: %v", ans.IssuedAt, err)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", resp.Header)
	}
	if n := len(e.cluster.TokenReviews()); n != 0 {
		t.Errorf("robot login caused %d TokenReviews", n)
	}
	// The token pulls.
	if resp, _ := e.get("/v2/openshift/ci/manifests/"+tag, ans.Token); resp.StatusCode != 200 {
		t.Errorf("pull with robot token: %d", resp.StatusCode)
	}
}

func TestWrongRobotPasswordIsNeverSentToTheCluster(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, pass := range []string{"not-the-robot-password", aliceToken} {
		resp, _, body := e.login(robotUser, pass, pullScope)
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="qci-appci"` {
			t.Errorf("robot with password %q: %d %q", pass, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if code := registryError(t, resp, body); code != "UNAUTHORIZED" {
			t.Errorf("code %s", code)
		}
	}
	if n := len(e.cluster.TokenReviews()); n != 0 {
		t.Errorf("%d TokenReviews for the reserved robot name", n)
	}
	if strings.Contains(e.logs.String(), "not-the-robot-password") || strings.Contains(e.logs.String(), aliceToken) {
		t.Errorf("a password reached the log:\n%s", e.logs)
	}
}

func TestNoCredentials(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, body := e.do(http.MethodGet, "/v2/auth?scope=repository:openshift/ci:pull", nil, nil)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="qci-appci"` {
		t.Errorf("%d %v", resp.StatusCode, resp.Header)
	}
	registryError(t, resp, body)
}

func TestClusterLogin(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, ans, body := e.login("anyone", aliceToken, pullScope)
	if resp.StatusCode != 200 {
		t.Fatalf("alice: %d %s", resp.StatusCode, body)
	}
	sars := e.cluster.SubjectAccessReviews()
	if len(sars) != 1 {
		t.Fatalf("%d SubjectAccessReviews, want 1", len(sars))
	}
	s := sars[0].Spec
	ra := s.ResourceAttributes
	if s.User != "alice" || s.UID != "uid-alice" || len(s.Groups) != 2 || s.Groups[1] != "devs" ||
		len(s.Extra["scopes.authorization.openshift.io"]) != 1 || ra == nil || ra.Namespace != "ocp" || ra.Verb != "get" ||
		ra.Group != "image.openshift.io" || ra.Resource != "imagestreams" || ra.Subresource != "layers" {
		t.Errorf("SubjectAccessReview spec %+v %+v", s, ra)
	}
	if resp, _ := e.get("/v2/openshift/ci/manifests/"+tag, ans.Token); resp.StatusCode != 200 {
		t.Errorf("pull as alice: %d", resp.StatusCode)
	}
	// The answer is cached: a second login does not review again.
	if resp, _, _ := e.login("anyone", aliceToken, pullScope); resp.StatusCode != 200 {
		t.Fatalf("second login %d", resp.StatusCode)
	}
	if n := len(e.cluster.TokenReviews()); n != 1 {
		t.Errorf("%d TokenReviews after two logins, want 1 (cached)", n)
	}
	// Access through a group binding.
	if resp, _, body := e.login("carol", carolToken, pullScope); resp.StatusCode != 200 {
		t.Errorf("carol (group): %d %s", resp.StatusCode, body)
	}
	if logs := e.logs.String(); strings.Contains(logs, aliceToken) || strings.Contains(logs, ans.Token) {
		t.Errorf("a token reached the log")
	}
}

func TestConcurrentClusterLoginsShareOneReview(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.concurrently(20, func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/auth?scope=repository:openshift/ci:pull", nil)
		req.SetBasicAuth("x", aliceToken)
		return req
	})
	if n := len(e.cluster.TokenReviews()); n != 1 {
		t.Errorf("%d TokenReviews for 20 concurrent logins with one token, want 1", n)
	}
}

func TestClusterLoginDeniedAndUnknown(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, _, body := e.login("bob", bobToken, pullScope)
	if resp.StatusCode != http.StatusForbidden || registryError(t, resp, body) != "DENIED" {
		t.Errorf("bob: %d %s", resp.StatusCode, body)
	}
	resp, _, body = e.login("eve", "sha256~unknown", pullScope)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="qci-appci"` {
		t.Errorf("unknown token: %d %s", resp.StatusCode, body)
	}
	e.assertUpstreamSawNothing()
}

func TestClusterDown(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cluster.SetDown(true)
	resp, _, body := e.login("alice", aliceToken, pullScope)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || registryError(t, resp, body) != "UNAVAILABLE" {
		t.Errorf("cluster down: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	if resp, _, _ := e.login(robotUser, robotPass, pullScope); resp.StatusCode != 200 {
		t.Errorf("robot login while the cluster is down: %d", resp.StatusCode)
	}
	e.cluster.SetDown(false)
	if resp, _, body := e.login("alice", aliceToken, pullScope); resp.StatusCode != 200 {
		t.Errorf("after the cluster came back: %d %s", resp.StatusCode, body)
	}
}

func TestClusterForbidsReviews(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.cluster.SetForbidReviews(true)
	resp, _, _ := e.login("alice", aliceToken, pullScope)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("reviews forbidden: %d, want 503", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), "system:auth-delegator") {
		t.Errorf("the log does not say what to fix:\n%s", e.logs)
	}
}

func TestClusterLoginOff(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	resp, _, _ := e.login("alice", aliceToken, pullScope)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("cluster login with cluster login off: %d, want 401", resp.StatusCode)
	}
	if !strings.Contains(e.logs.String(), "cluster login is off") {
		t.Errorf("start-up did not say cluster login is off")
	}
}

func TestOAuth2PasswordAndRefresh(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, ans, body := e.postForm(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {aliceToken},
		"scope": {"repository:openshift/ci:pull"}, "service": {e.host()}, "client_id": {"containerd"}})
	if resp.StatusCode != 200 || ans.RefreshToken == "" || ans.AccessToken == "" {
		t.Fatalf("password grant: %d %s", resp.StatusCode, body)
	}
	sarsBefore := len(e.cluster.SubjectAccessReviews())
	resp, ref, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken},
		"scope": {"repository:openshift/ci:pull"}, "service": {e.host()}, "client_id": {"docker"}})
	if resp.StatusCode != 200 || ref.AccessToken == "" || ref.RefreshToken != "" {
		t.Fatalf("refresh grant: %d %s", resp.StatusCode, body)
	}
	if n := len(e.cluster.SubjectAccessReviews()); n != sarsBefore+1 {
		t.Errorf("refresh ran %d SubjectAccessReviews, want 1 fresh one", n-sarsBefore)
	}
	if resp, _ := e.get("/v2/openshift/ci/manifests/"+tag, ref.AccessToken); resp.StatusCode != 200 {
		t.Errorf("pull with the refreshed token: %d", resp.StatusCode)
	}
	// An access token is not a refresh token.
	if resp, _, _ := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.AccessToken}}); resp.StatusCode != 401 {
		t.Errorf("access token as refresh token: %d", resp.StatusCode)
	}
	// A user whose access was removed cannot refresh, though the token is valid.
	e.cluster.Revoke("alice")
	if resp, _, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken}, "scope": {"repository:openshift/ci:pull"}}); resp.StatusCode != 403 {
		t.Errorf("refresh after revocation: %d %s", resp.StatusCode, body)
	}
	// The robot's refresh needs no cluster.
	_, robot, _ := e.postForm(url.Values{"grant_type": {"password"}, "username": {robotUser}, "password": {robotPass}})
	e.cluster.SetDown(true)
	if resp, _, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {robot.RefreshToken}, "scope": {"repository:openshift/ci:pull"}}); resp.StatusCode != 200 {
		t.Errorf("robot refresh with the cluster down: %d %s", resp.StatusCode, body)
	}
}

func TestDockerOfflineToken(t *testing.T) {
	e := newEnv(t, envOptions{})
	resp, ans, _ := e.login(robotUser, robotPass, url.Values{"scope": {"repository:openshift/ci:pull"}, "offline_token": {"true"}, "client_id": {"docker"}})
	if resp.StatusCode != 200 || ans.RefreshToken == "" {
		t.Fatalf("offline_token: %d %+v", resp.StatusCode, ans)
	}
}

func TestBadTokenRequests(t *testing.T) {
	e := newEnv(t, envOptions{})
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	cases := []struct {
		name   string
		header http.Header
		body   string
		status int
	}{
		{"over 64 KiB", form, "grant_type=password&username=a&password=" + strings.Repeat("x", 65<<10), 400},
		{"malformed", form, "grant_type=password&%zz", 400},
		{"unknown grant", form, "grant_type=client_credentials", 400},
		{"no grant", form, "username=a&password=b", 400},
		{"JSON body", http.Header{"Content-Type": {"application/json"}}, `{"grant_type":"password"}`, 400},
		{"password grant without password", form, "grant_type=password&username=a", 401},
		{"refresh grant with garbage", form, "grant_type=refresh_token&refresh_token=garbage", 401},
	}
	for _, c := range cases {
		resp, body := e.do(http.MethodPost, "/v2/auth", c.header, strings.NewReader(c.body))
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d (%s)", c.name, resp.StatusCode, c.status, body)
			continue
		}
		registryError(t, resp, body)
	}
	if n := len(e.cluster.TokenReviews()); n != 0 {
		t.Errorf("bad requests caused %d TokenReviews", n)
	}
}

func TestAudienceBoundTokens(t *testing.T) {
	const aud = "https://registry.ci.example.com"
	e := newEnv(t, envOptions{audiences: []string{aud}})
	e.cluster.AddToken("bound-token", clustertest.User{Name: "ci-pod", UID: "uid-pod"}, aud)
	e.cluster.Allow("ci-pod")
	if resp, _, body := e.login("ci-pod", "bound-token", pullScope); resp.StatusCode != 200 {
		t.Errorf("token bound to %s: %d %s", aud, resp.StatusCode, body)
	}
	// alice's token has the API server's default audience only.
	if resp, _, _ := e.login("alice", aliceToken, pullScope); resp.StatusCode != 401 {
		t.Errorf("default-audience token: %d, want 401", resp.StatusCode)
	}
	for _, tr := range e.cluster.TokenReviews() {
		if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != aud {
			t.Errorf("TokenReview audiences %v, want [%s]", tr.Spec.Audiences, aud)
		}
	}
}

func TestRevokedUserStopsAfterReviewCache(t *testing.T) {
	e := newEnv(t, envOptions{reviewTTL: time.Nanosecond})
	if resp, _, _ := e.login("alice", aliceToken, pullScope); resp.StatusCode != 200 {
		t.Fatalf("login %d", resp.StatusCode)
	}
	e.cluster.Revoke("alice")
	if resp, _, _ := e.login("alice", aliceToken, pullScope); resp.StatusCode != 403 {
		t.Errorf("after revocation and cache expiry: %d, want 403", resp.StatusCode)
	}
	if resp, _, _ := e.login("carol", carolToken, pullScope); resp.StatusCode != 200 {
		t.Fatalf("carol: %d", resp.StatusCode)
	}
	e.cluster.RemoveToken(carolToken)
	if resp, _, _ := e.login("carol", carolToken, pullScope); resp.StatusCode != 401 {
		t.Errorf("deleted token: %d, want 401", resp.StatusCode)
	}
}
