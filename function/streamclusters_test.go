package function_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/test/clustertest"
)

// TestClustersFileImageStreamReviews: cluster b of QCI_CLUSTERS_FILE
// reviews each image stream (authorization {imageStreams: true}). Its
// user allowed on ci/ci-operator logs in with a token b authenticates (no
// login-time review), is granted that scope and refused another stream
// with a 403 naming it, each review asked at b only; the upstream
// repository takes the namespace review in b's namespace; a refresh asks
// b again. A's users (namespace review at login) keep the whole mirror.
func TestClustersFileImageStreamReviews(t *testing.T) {
	e := newTwoClusterEnvWith(t, "{imageStreams: true, namespace: ci-pull}")
	const user = "system:serviceaccount:ci:builder"
	builder := jwtNaming("https://b.example", user)
	e.b.AddToken(builder, clustertest.User{Name: user, UID: "uid-builder"}, "https://registry.ci.example.com")
	e.b.AllowOn(user, "ci", "ci-operator")

	// The login probe needs only the token.
	if resp, _, body := e.login("builder", builder, nil); resp.StatusCode != 200 || len(e.b.SubjectAccessReviews()) != 0 {
		t.Fatalf("login probe: %d %s, %d reviews at B", resp.StatusCode, body, len(e.b.SubjectAccessReviews()))
	}
	resp, ans, body := e.postForm(url.Values{"grant_type": {"password"}, "username": {"builder"}, "password": {builder},
		"scope": {"repository:ci/ci-operator:pull"}})
	if resp.StatusCode != 200 || ans.RefreshToken == "" {
		t.Fatalf("B's token for ci/ci-operator: %d %s", resp.StatusCode, body)
	}
	if r, b := e.get("/v2/ci/ci-operator/manifests/latest", ans.Token); r.StatusCode != 200 || r.Header.Get("Docker-Content-Digest") != digestOf(t, e.img).String() {
		t.Errorf("pull ci/ci-operator:latest: %d %s", r.StatusCode, b)
	}
	if n := streamReviews(e.b.SubjectAccessReviews(), user, "ci", "ci-operator"); n != 1 || len(e.b.SubjectAccessReviews()) != 1 {
		t.Errorf("%d reviews of ci/ci-operator at B, %d in all; want 1", n, len(e.b.SubjectAccessReviews()))
	}

	resp, _, body = e.login("builder", builder, url.Values{"scope": {"repository:ci/other:pull"}})
	if resp.StatusCode != http.StatusForbidden || registryError(t, resp, body) != "DENIED" ||
		!strings.Contains(string(body), "imagestreams/layers other (group image.openshift.io) in namespace ci") {
		t.Errorf("token for ci/other: %d %s; want 403 DENIED naming the permission", resp.StatusCode, body)
	}
	if n := streamReviews(e.b.SubjectAccessReviews(), user, "ci", "other"); n != 1 {
		t.Errorf("%d reviews of ci/other at B; want 1", n)
	}
	// The upstream repository: a namespace review in B's own namespace.
	resp, _, body = e.login("builder", builder, pullScope)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "in namespace ci-pull") {
		t.Errorf("token for %s: %d %s; want 403 naming ci-pull", repo, resp.StatusCode, body)
	}
	if n := streamReviews(e.b.SubjectAccessReviews(), user, "ci-pull", ""); n != 1 {
		t.Errorf("%d namespace reviews in ci-pull at B; want 1", n)
	}
	if n := len(e.a.TokenReviews()) + len(e.a.SubjectAccessReviews()); n != 0 {
		t.Errorf("A answered %d reviews for B's user", n)
	}

	// A refresh asks B again (no cached answer), and B's word holds.
	refresh := func() (int, tokenAnswer, []byte) {
		resp, ans, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken},
			"scope": {"repository:ci/ci-operator:pull"}})
		return resp.StatusCode, ans, body
	}
	code, fresh, body := refresh()
	if code != 200 || !slices.ContainsFunc(accessOf(t, fresh.Token), func(s string) bool { return s == "ci/ci-operator" }) {
		t.Fatalf("refresh: %d %s", code, body)
	}
	if n := streamReviews(e.b.SubjectAccessReviews(), user, "ci", "ci-operator"); n != 2 {
		t.Errorf("%d reviews of ci/ci-operator at B after the refresh; want 2", n)
	}
	e.b.RevokeOn(user, "ci", "ci-operator")
	if code, _, body := refresh(); code != http.StatusForbidden {
		t.Errorf("refresh after B revoked the grant: %d %s, want 403", code, body)
	}

	// A's user (namespace review at login) keeps the whole mirror, with no
	// review per image stream.
	alice := "sha256~alice-of-a"
	e.a.AddToken(alice, clustertest.User{Name: "alice"})
	e.a.Allow("alice")
	resp, ans, body = e.login("alice", alice, url.Values{"scope": {"repository:ci/other:pull"}})
	if resp.StatusCode != 200 || !slices.Equal(accessOf(t, ans.Token), []string{"ci/other"}) {
		t.Errorf("A's user on ci/other: %d %s", resp.StatusCode, body)
	}
	if n := len(e.a.SubjectAccessReviews()); n != 1 {
		t.Errorf("%d reviews at A; want only the login's", n)
	}
	if n := streamReviews(e.b.SubjectAccessReviews(), "alice", "ci", "other"); n != 0 {
		t.Errorf("B reviewed A's user %d times", n)
	}
}

// accessOf are the repositories an access token grants pull on.
func accessOf(t *testing.T, jwt string) []string {
	t.Helper()
	var repos []string
	access, _ := claimsOf(t, jwt)["access"].([]any)
	for _, a := range access {
		m, _ := a.(map[string]any)
		if name, ok := m["name"].(string); ok {
			repos = append(repos, name)
		}
	}
	return repos
}
