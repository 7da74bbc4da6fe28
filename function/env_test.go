package function_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/logbuffer"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

const (
	repo       = "openshift/ci"
	tag        = "ci_ci-operator_latest"
	robotUser  = "openshift+ci_robot"
	robotPass  = "robot-password-upstream"
	aliceToken = "sha256~alice-cluster-token"
	bobToken   = "sha256~bob-cluster-token"
	carolToken = "sha256~carol-cluster-token" // allowed through a group
)

// env is the function in front of a real distribution registry with token
// auth and a stand-in of the cluster API, all in process on loopback.
type env struct {
	t       *testing.T
	reg     *registrytest.Registry
	cluster *clustertest.Server
	srv     *httptest.Server
	key     string
	img     v1.Image
	logs    *logbuffer.Buffer
}

type envOptions struct {
	tokenTTL   time.Duration
	noCluster  bool
	upstreamTT time.Duration
	audiences  []string
	reviewTTL  time.Duration
	// configure, when set, edits the configuration last.
	configure func(*config.Config)
	// newHandler, when set, builds the function instead of function.New.
	newHandler func(config.Config) (http.Handler, error)
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, logs: &logbuffer.Buffer{}}
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass, TokenTTL: o.upstreamTT})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	e.reg = reg
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.img, err = reg.PushRandomImage(ctx, tag, 2, 64<<10)
	if err != nil {
		t.Fatal(err)
	}

	cfg := config.Defaults()
	cfg.UpstreamURL = reg.URL()
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	e.key = hex.EncodeToString(k)
	cfg.SigningKey = config.Secret(e.key)
	cfg.TokenAudiences = o.audiences
	if o.reviewTTL > 0 {
		cfg.ReviewCacheTTL = config.NewDuration(o.reviewTTL)
	}
	if o.tokenTTL > 0 {
		cfg.TokenTTL = config.NewDuration(o.tokenTTL)
	}
	cfg.Logger = slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if !o.noCluster {
		cl, err := clustertest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		e.cluster = cl
		cl.AddToken(aliceToken, clustertest.User{Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated", "devs"},
			Extra: map[string][]string{"scopes.authorization.openshift.io": {"user:full"}}})
		cl.AddToken(bobToken, clustertest.User{Name: "bob", UID: "uid-bob", Groups: []string{"system:authenticated"}})
		cl.AddToken(carolToken, clustertest.User{Name: "carol", UID: "uid-carol", Groups: []string{"system:authenticated", "ci-pullers"}})
		cl.Allow("alice")
		cl.AllowGroup("ci-pullers")
		kc, err := cl.WriteKubeconfig(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		cfg.Kubeconfig = kc
	}
	if o.configure != nil {
		o.configure(&cfg)
	}
	newHandler := function.New
	if o.newHandler != nil {
		newHandler = o.newHandler
	}
	h, err := newHandler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	reg.ResetRequests()
	return e
}

// host is the function's host:port: the token service, issuer and audience.
func (e *env) host() string { return strings.TrimPrefix(e.srv.URL, "http://") }

// do sends a request to the function and returns the answer with its body read.
func (e *env) do(method, path string, header http.Header, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if req.URL.RawPath == "" && strings.Contains(path, "%") {
		req.URL.RawPath = path
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *env) get(path, tok string) (*http.Response, []byte) {
	e.t.Helper()
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	return e.do(http.MethodGet, path, h, nil)
}

type tokenAnswer struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token"`
}

// login does a docker-style GET /v2/auth and returns the status and answer.
func (e *env) login(user, pass string, query url.Values) (*http.Response, tokenAnswer, []byte) {
	e.t.Helper()
	h := http.Header{}
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, pass)
	h.Set("Authorization", req.Header.Get("Authorization"))
	resp, body := e.do(http.MethodGet, "/v2/auth?"+query.Encode(), h, nil)
	var ans tokenAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &ans); err != nil {
			e.t.Fatalf("token answer %q: %v", body, err)
		}
	}
	return resp, ans, body
}

// pullToken logs in as the robot for pull on the served repository.
func (e *env) pullToken() string {
	e.t.Helper()
	resp, ans, body := e.login(robotUser, robotPass, url.Values{"scope": {"repository:" + repo + ":pull"}, "service": {e.host()}})
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("robot login: %d %s", resp.StatusCode, body)
	}
	return ans.Token
}

func (e *env) postForm(form url.Values) (*http.Response, tokenAnswer, []byte) {
	e.t.Helper()
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	resp, body := e.do(http.MethodPost, "/v2/auth", h, strings.NewReader(form.Encode()))
	var ans tokenAnswer
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &ans); err != nil {
			e.t.Fatalf("token answer %q: %v", body, err)
		}
	}
	return resp, ans, body
}

// upstreamSaw returns the registry paths (not token fetches) the upstream received.
func (e *env) upstreamSaw() []registrytest.Request {
	var out []registrytest.Request
	for _, r := range e.reg.Requests() {
		if strings.HasPrefix(r.Path, "/v2/") && r.Path != "/v2/" {
			out = append(out, r)
		}
	}
	return out
}

// assertUpstreamSawNothing fails when anything reached the upstream but
// the upstream token fetch that a probe of /v2/ or a login starts in the
// background (the challenge discovery, a GET /v2/ without credentials, and
// the realm's token request): no request of a client was forwarded.
func (e *env) assertUpstreamSawNothing() {
	e.t.Helper()
	realm, _ := url.Parse(e.reg.Realm())
	var reqs []registrytest.Request
	for _, r := range e.reg.Requests() {
		discovery := r.Method == http.MethodGet && r.Path == "/v2/" && r.Header.Get("Authorization") == ""
		if !discovery && r.Path != realm.Path {
			reqs = append(reqs, r)
		}
	}
	if len(reqs) > 0 {
		e.t.Errorf("the upstream received %d requests, want none; first: %s %s", len(reqs), reqs[0].Method, reqs[0].Path)
	}
}

// assertOnlyRobotTokenUpstream checks that every upstream request carried
// an upstream-issued token, never one of ours or a cluster token.
func (e *env) assertOnlyRobotTokenUpstream(ours ...string) {
	e.t.Helper()
	for _, r := range e.reg.Requests() {
		auth := r.Header.Get("Authorization")
		for _, secret := range append(ours, aliceToken, bobToken, carolToken) {
			if secret != "" && strings.Contains(auth, secret) {
				e.t.Errorf("upstream %s %s carried a client credential", r.Method, r.Path)
			}
		}
		if strings.HasPrefix(r.Path, "/v2/") && r.Path != "/v2/" && !strings.HasPrefix(auth, "Bearer ") {
			e.t.Errorf("upstream %s %s had Authorization %q, want the robot's Bearer token", r.Method, r.Path, auth)
		}
	}
}

// registryError decodes the registry JSON error shape.
func registryError(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if v := resp.Header.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
		t.Errorf("Docker-Distribution-API-Version %q", v)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("body %q is not a registry error: %v", body, err)
	}
	return e.Errors[0].Code
}

// concurrently sends n copies of the request that mk builds, all at once,
// and fails the test unless each is answered 200.
func (e *env) concurrently(n int, mk func() *http.Request) {
	e.t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.srv.Client().Do(mk())
			if err != nil {
				e.t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				e.t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
}
