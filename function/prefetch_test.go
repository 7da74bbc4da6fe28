package function_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
)

// tokenUpstream is a token-auth upstream that counts its token requests and
// reports each on tokenHit.
type tokenUpstream struct {
	srv           *httptest.Server
	tokenRequests atomic.Int32
	tokenHit      chan struct{}
	manifest      []byte
}

func newTokenUpstream(t *testing.T) *tokenUpstream {
	t.Helper()
	u := &tokenUpstream{tokenHit: make(chan struct{}, 16), manifest: []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			if user, pass, ok := r.BasicAuth(); !ok || user != robotUser || pass != robotPass {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			u.tokenRequests.Add(1)
			_, _ = io.WriteString(w, `{"token":"upstream-token","expires_in":300}`)
			u.tokenHit <- struct{}{}
		case r.Header.Get("Authorization") != "Bearer upstream-token":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+u.srv.URL+`/token",service="up"`)
			w.WriteHeader(http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			_, _ = w.Write(u.manifest)
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *tokenUpstream) function(t *testing.T, edit func(*config.Config)) *httptest.Server {
	t.Helper()
	cfg := config.Defaults()
	cfg.UpstreamURL = u.srv.URL
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	cfg.SigningKey = "0123456789abcdef0123456789abcdef"
	cfg.Logger = slog.New(slog.DiscardHandler)
	if edit != nil {
		edit(&cfg)
	}
	fn, err := function.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fn)
	t.Cleanup(srv.Close)
	return srv
}

// TestTokenPrefetchedAtBaseProbe: a client's GET /v2/ (no proxied request
// yet) starts the upstream token fetch; the pull that follows finds it
// ready and fetches no other; nothing is fetched at start-up.
func TestTokenPrefetchedAtBaseProbe(t *testing.T) {
	up := newTokenUpstream(t)
	srv := up.function(t, nil)
	resp, err := http.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := up.tokenRequests.Load(); n != 0 {
		t.Fatalf("%d upstream token requests at start-up, want 0", n)
	}
	resp, err = http.Get(srv.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /v2/ without a token: %d", resp.StatusCode)
	}
	select {
	case <-up.tokenHit:
	case <-time.After(10 * time.Second):
		t.Fatal("GET /v2/ did not start the upstream token fetch")
	}
	tok := robotToken(t, srv)
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/openshift/ci/manifests/latest", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != string(up.manifest) {
		t.Fatalf("pull: %d %q", resp.StatusCode, body)
	}
	if n := up.tokenRequests.Load(); n != 1 {
		t.Errorf("%d upstream token requests after /v2/ and a pull, want 1", n)
	}
}

// TestTokenPrefetchedAtLogin: the same from /v2/auth, the first request of
// a client that logs in before probing.
func TestTokenPrefetchedAtLogin(t *testing.T) {
	up := newTokenUpstream(t)
	srv := up.function(t, nil)
	if tok := robotToken(t, srv); !strings.Contains(tok, ".") {
		t.Fatalf("login failed: %q", tok)
	}
	select {
	case <-up.tokenHit:
	case <-time.After(10 * time.Second):
		t.Fatal("GET /v2/auth did not start the upstream token fetch")
	}
	if n := up.tokenRequests.Load(); n != 1 {
		t.Errorf("%d upstream token requests, want 1", n)
	}
}
