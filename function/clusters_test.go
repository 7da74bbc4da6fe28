package function_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/logbuffer"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

// twoClusterEnv is the function with QCI_CLUSTERS_FILE naming two stand-in
// clusters: a (opaque tokens, issuer https://a.example) and b (issuer
// https://b.example, audience the function's URL).
type twoClusterEnv struct {
	*env
	a, b *clustertest.Server
	// metrics is the registry of the function's metrics.
	metrics *prometheus.Registry
}

func jwtNaming(iss, sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"iss": iss, "sub": sub})
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(claims) + "." + enc([]byte(sub))
}

func newTwoClusterEnv(t *testing.T) *twoClusterEnv {
	t.Helper()
	return newTwoClusterEnvWith(t, "{namespace: ci-pull}")
}

// newTwoClusterEnvWith is newTwoClusterEnv with b's authorization, in the
// clusters file's YAML.
func newTwoClusterEnvWith(t *testing.T, bAuthorization string) *twoClusterEnv {
	t.Helper()
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := &env{t: t, reg: reg, logs: &logbuffer.Buffer{}}
	if e.img, err = reg.PushRandomImage(ctx, tag, 1, 1<<10); err != nil {
		t.Fatal(err)
	}
	te := &twoClusterEnv{env: e}
	dir := t.TempDir()
	var files [2]string
	for i, s := range []**clustertest.Server{&te.a, &te.b} {
		if *s, err = clustertest.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup((*s).Close)
		sub := filepath.Join(dir, string(rune('a'+i)))
		if err := os.Mkdir(sub, 0o700); err != nil {
			t.Fatal(err)
		}
		if files[i], err = (*s).WriteKubeconfig(sub); err != nil {
			t.Fatal(err)
		}
	}
	clusters := filepath.Join(dir, "clusters.yaml")
	if err := os.WriteFile(clusters, []byte(`clusters:
- name: a
  kubeconfig: `+files[0]+`
  opaqueTokens: true
  issuers: [https://a.example]
- name: b
  kubeconfig: `+files[1]+`
  issuers: [https://b.example]
  audiences: [https://registry.ci.example.com]
  authorization: `+bAuthorization+`
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.UpstreamURL = reg.URL()
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	cfg.SigningKey = config.Secret(hex.EncodeToString(k))
	cfg.ClustersFile = clusters
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, nil))
	te.metrics = prometheus.NewRegistry()
	cfg.Metrics = metrics.New(te.metrics)
	h, err := function.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	te.b.SetNamespace("ci-pull")
	return te
}

func claimsOf(t *testing.T, jwt string) map[string]any {
	t.Helper()
	parts := strings.Split(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTwoClustersLoginPullAndRefresh(t *testing.T) {
	e := newTwoClusterEnv(t)
	aliceOfA := "sha256~alice-of-a"
	e.a.AddToken(aliceOfA, clustertest.User{Name: "alice"})
	e.a.Allow("alice")
	builder := jwtNaming("https://b.example", "system:serviceaccount:ci:builder")
	e.b.AddToken(builder, clustertest.User{Name: "system:serviceaccount:ci:builder", UID: "uid-builder"}, "https://registry.ci.example.com")
	e.b.Allow("system:serviceaccount:ci:builder")

	resp, ans, body := e.login("alice", aliceOfA, pullScope)
	if resp.StatusCode != 200 {
		t.Fatalf("A's opaque token: %d %s", resp.StatusCode, body)
	}
	if c := claimsOf(t, ans.Token); c["qci_cluster"] != "a" {
		t.Errorf("access token claims %v do not name cluster a", c)
	}
	// Again, from A's review cache: still cluster a.
	resp, ans, body = e.login("alice", aliceOfA, pullScope)
	if c := claimsOf(t, ans.Token); resp.StatusCode != 200 || c["qci_cluster"] != "a" || len(e.a.TokenReviews()) != 1 {
		t.Errorf("cached login: %d %s, claims %v, %d TokenReviews", resp.StatusCode, body, c, len(e.a.TokenReviews()))
	}
	resp, ans, body = e.postForm(url.Values{"grant_type": {"password"}, "username": {"builder"}, "password": {builder},
		"scope": {"repository:" + repo + ":pull"}})
	if resp.StatusCode != 200 || ans.RefreshToken == "" {
		t.Fatalf("B's token: %d %s", resp.StatusCode, body)
	}
	if c := claimsOf(t, ans.RefreshToken); c["qci_cluster"] != "b" || c["qci_login"] != "cluster" {
		t.Errorf("refresh token claims %v do not name cluster b", c)
	}
	if resp, _ := e.get("/v2/"+repo+"/manifests/"+tag, ans.Token); resp.StatusCode != 200 {
		t.Errorf("pull with B's login: %d", resp.StatusCode)
	}
	if len(e.a.TokenReviews()) != 1 || len(e.b.TokenReviews()) != 1 {
		t.Fatalf("TokenReviews: A %d, B %d, want 1 each", len(e.a.TokenReviews()), len(e.b.TokenReviews()))
	}
	if got := e.b.TokenReviews()[0].Spec.Audiences; len(got) != 1 || got[0] != "https://registry.ci.example.com" {
		t.Errorf("B's TokenReview audiences %q", got)
	}
	if ra := e.b.SubjectAccessReviews()[0].Spec.ResourceAttributes; ra.Namespace != "ci-pull" {
		t.Errorf("B's SubjectAccessReview in %q, want its own namespace ci-pull", ra.Namespace)
	}

	// The refresh re-authorizes at B, and only there.
	sarsA := len(e.a.SubjectAccessReviews())
	refresh := func() int {
		resp, _, _ := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken},
			"scope": {"repository:" + repo + ":pull"}})
		return resp.StatusCode
	}
	if code := refresh(); code != 200 {
		t.Fatalf("refresh: %d", code)
	}
	if len(e.b.SubjectAccessReviews()) != 2 || len(e.a.SubjectAccessReviews()) != sarsA {
		t.Errorf("refresh reviews: A %d, B %d", len(e.a.SubjectAccessReviews()), len(e.b.SubjectAccessReviews()))
	}
	e.b.Revoke("system:serviceaccount:ci:builder")
	if code := refresh(); code != 403 {
		t.Errorf("refresh after B revoked the user: %d, want 403", code)
	}
	// B down: 503 for B's users, A's users still log in.
	e.b.SetDown(true)
	if code := refresh(); code != 503 {
		t.Errorf("refresh with B down: %d, want 503", code)
	}
	other := jwtNaming("https://b.example", "system:serviceaccount:ci:other")
	if resp, _, _ := e.login("other", other, pullScope); resp.StatusCode != 503 {
		t.Errorf("B's new user with B down: %d, want 503", resp.StatusCode)
	}
	bobOfA := "sha256~bob-of-a"
	e.a.AddToken(bobOfA, clustertest.User{Name: "bob"})
	e.a.Allow("bob")
	if resp, _, body := e.login("bob", bobOfA, pullScope); resp.StatusCode != 200 {
		t.Errorf("A's user with B down: %d %s", resp.StatusCode, body)
	}
	// A token of neither cluster: 401, and neither saw it.
	trA, trB := len(e.a.TokenReviews()), len(e.b.TokenReviews())
	if resp, _, _ := e.login("x", jwtNaming("https://c.example", "x"), pullScope); resp.StatusCode != 401 {
		t.Errorf("a token of no cluster: %d, want 401", resp.StatusCode)
	}
	if len(e.a.TokenReviews()) != trA || len(e.b.TokenReviews()) != trB {
		t.Error("a token of no cluster was reviewed")
	}
	var sawLogin bool
	for _, line := range strings.Split(e.logs.String(), "\n") {
		var l struct{ Msg, User, Cluster string }
		_ = json.Unmarshal([]byte(line), &l)
		if l.Msg == "login" && l.User == "system:serviceaccount:ci:builder" {
			sawLogin = true
			if l.Cluster != "b" {
				t.Errorf("login line %s does not name cluster b", line)
			}
		}
	}
	if !sawLogin {
		t.Errorf("no login line for B's user:\n%s", e.logs)
	}
	if strings.Contains(e.logs.String(), builder) || strings.Contains(e.logs.String(), aliceOfA) {
		t.Error("a token reached the log")
	}
	// Each cluster's reviews are counted under its own name: an operator
	// sees which cluster is down.
	want := fmt.Sprintf(`
# HELP qci_cluster_reviews_total TokenReviews and SubjectAccessReviews sent to a cluster, by cluster (its name in QCI_CLUSTERS_FILE, empty for the single cluster), kind and result.
# TYPE qci_cluster_reviews_total counter
qci_cluster_reviews_total{cluster="a",kind="subject_access_review",result="allowed"} %d
qci_cluster_reviews_total{cluster="a",kind="token_review",result="allowed"} %d
qci_cluster_reviews_total{cluster="b",kind="subject_access_review",result="allowed"} 2
qci_cluster_reviews_total{cluster="b",kind="subject_access_review",result="denied"} 1
qci_cluster_reviews_total{cluster="b",kind="subject_access_review",result="error"} 1
qci_cluster_reviews_total{cluster="b",kind="token_review",result="allowed"} 1
qci_cluster_reviews_total{cluster="b",kind="token_review",result="error"} 1
`, len(e.a.SubjectAccessReviews()), len(e.a.TokenReviews()))
	if err := testutil.GatherAndCompare(e.metrics, strings.NewReader(want), "qci_cluster_reviews_total"); err != nil {
		t.Error(err)
	}
}

// TestAllowListRefreshTakesNoReviewSlot: a refresh of a user of a cluster
// whose authorization is an allow list is decided in memory, so it
// succeeds while every review slot of that cluster is held by logins
// waiting on a slow API server, and asks the cluster nothing; a refresh of
// a user of a namespace-review cluster needs a slot and is refused 503 at
// once.
func TestAllowListRefreshTakesNoReviewSlot(t *testing.T) {
	e := newTwoClusterEnvWith(t, "{allow: {namespaces: [ci]}}")
	builder := jwtNaming("https://b.example", "system:serviceaccount:ci:builder")
	e.b.AddToken(builder, clustertest.User{Name: "system:serviceaccount:ci:builder", UID: "uid-builder"}, "https://registry.ci.example.com")
	aliceOfA := "sha256~alice-of-a"
	e.a.AddToken(aliceOfA, clustertest.User{Name: "alice"})
	e.a.Allow("alice")
	refreshTokens := map[string]string{}
	for cluster, cred := range map[string][2]string{"a": {"alice", aliceOfA}, "b": {"builder", builder}} {
		resp, ans, body := e.postForm(url.Values{"grant_type": {"password"}, "username": {cred[0]}, "password": {cred[1]},
			"scope": {"repository:" + repo + ":pull"}})
		if resp.StatusCode != 200 || ans.RefreshToken == "" {
			t.Fatalf("login at %s: %d %s", cluster, resp.StatusCode, body)
		}
		refreshTokens[cluster] = ans.RefreshToken
	}
	sarsB := len(e.b.SubjectAccessReviews())

	// Every review slot of both clusters is held by a login of a token
	// not seen before, waiting on its TokenReview.
	const slots = login.DefaultMaxReviews
	var held sync.WaitGroup
	var releases []func()
	bogusOfA := func(i int) string { return fmt.Sprintf("sha256~bogus-%d", i) }
	bogusOfB := func(i int) string {
		return jwtNaming("https://b.example", fmt.Sprintf("system:serviceaccount:ci:bogus-%d", i))
	}
	for _, c := range []struct {
		s     *clustertest.Server
		token func(i int) string
	}{{e.a, bogusOfA}, {e.b, bogusOfB}} {
		arrived, release := c.s.HoldReviews()
		t.Cleanup(release)
		releases = append(releases, release)
		for i := range slots {
			req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/auth", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("bogus", c.token(i))
			held.Go(func() {
				if resp, err := e.srv.Client().Do(req); err == nil {
					_ = resp.Body.Close()
				}
			})
		}
		for range slots {
			<-arrived
		}
	}
	refresh := func(cluster string) (int, []byte) {
		resp, _, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshTokens[cluster]},
			"scope": {"repository:" + repo + ":pull"}})
		return resp.StatusCode, body
	}
	if code, body := refresh("b"); code != 200 {
		t.Errorf("refresh of an allow-listed user with every slot held: %d %s, want 200", code, body)
	}
	if code, body := refresh("a"); code != 503 || !strings.Contains(string(body), "too many logins are being checked") {
		t.Errorf("refresh needing a namespace review with every slot held: %d %s, want 503 busy", code, body)
	}
	if n := len(e.b.SubjectAccessReviews()); n != sarsB {
		t.Errorf("the allow-list refresh sent %d SubjectAccessReviews, want none", n-sarsB)
	}
	families, err := e.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if f.GetName() == "qci_cluster_reviews_total" && labels["cluster"] == "b" && labels["kind"] == "subject_access_review" {
				t.Errorf("a SubjectAccessReview of the allow-list cluster was counted: %v", labels)
			}
		}
	}
	for _, release := range releases {
		release()
	}
	held.Wait()
}
