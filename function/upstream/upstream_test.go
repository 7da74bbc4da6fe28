package upstream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/upstream"
)

// fakeUpstream speaks the token-auth handshake of a registry like quay.io:
// /v2/ answers 401 naming the realm, the realm issues tokens to the robot,
// and /v2/openshift/ci/... needs a current token.
type fakeUpstream struct {
	srv        *httptest.Server
	fetches    atomic.Int32
	mu         sync.Mutex
	valid      map[string]bool
	expiresIn  int
	realmURL   string // overrides the realm named in the challenge
	tokenGate  chan struct{}
	noAuth     bool
	seenTokens []string
	redirectTo string // /token redirects there, query kept
}

func newFakeUpstream(t *testing.T) *fakeUpstream {
	f := &fakeUpstream{valid: map[string]bool{}, expiresIn: 300}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	// Name the upstream localhost, as the realm rules care about host names.
	f.srv.URL = strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)
	return f
}

func (f *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/token" && f.redirectTo != "":
		http.Redirect(w, r, f.redirectTo+"?"+r.URL.RawQuery, http.StatusFound)
	case r.URL.Path == "/token":
		if f.tokenGate != nil {
			<-f.tokenGate
		}
		user, pass, ok := r.BasicAuth()
		if !ok || user != "robot" || pass != "secret" || r.URL.Query().Get("scope") != "repository:openshift/ci:pull" || r.URL.Query().Get("service") != "fake" {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		n := f.fetches.Add(1)
		tok := fmt.Sprintf("upstream-token-%d", n)
		f.mu.Lock()
		f.valid[tok] = true
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": f.expiresIn})
	case f.noAuth:
		_, _ = io.WriteString(w, "{}")
	default:
		auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		f.mu.Lock()
		ok := f.valid[auth]
		f.seenTokens = append(f.seenTokens, auth)
		f.mu.Unlock()
		if !ok {
			realm := f.realmURL
			if realm == "" {
				realm = f.srv.URL + "/token"
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`",service="fake"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "content of "+r.URL.Path)
	}
}

func (f *fakeUpstream) revokeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.valid)
}

func (f *fakeUpstream) source(t *testing.T, password string, now func() time.Time) *upstream.TokenSource {
	return f.sourceWith(t, upstream.TokenSourceOptions{Password: password, Now: now})
}

// sourceWith fills in the upstream, repository and robot name of opts.
func (f *fakeUpstream) sourceWith(t *testing.T, opts upstream.TokenSourceOptions) *upstream.TokenSource {
	u, err := url.Parse(f.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	opts.URL, opts.Repository, opts.Username = u, "openshift/ci", "robot"
	if opts.Password == "" {
		opts.Password = "secret"
	}
	if opts.Transport == nil {
		opts.Transport = upstream.NewTransport()
	}
	return upstream.NewTokenSource(opts)
}

// tokenServer is a second token endpoint, over https, that records whether
// it was reached and with which credentials.
type tokenServer struct {
	srv  *httptest.Server
	hits atomic.Int32
	auth atomic.Value
}

func newTokenServer(t *testing.T) *tokenServer {
	ts := &tokenServer{}
	ts.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.hits.Add(1)
		ts.auth.Store(r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, `{"token":"from-elsewhere","expires_in":300}`)
	}))
	t.Cleanup(ts.srv.Close)
	return ts
}

// TestRealmOnAnotherHTTPSHostGetsNoCredentials: a challenge that names a
// realm on another host, over https, does not get the robot credentials
// (go-containerregistry's TestBearerTokenNotLeakedOnCrossHostChallenge).
func TestRealmOnAnotherHTTPSHostGetsNoCredentials(t *testing.T) {
	evil := newTokenServer(t)
	f := newFakeUpstream(t)
	f.realmURL = evil.srv.URL + "/token"
	_, err := f.sourceWith(t, upstream.TokenSourceOptions{Transport: evil.srv.Client().Transport}).Token(context.Background())
	if !errors.Is(err, upstream.ErrUnavailable) || !errors.Is(err, upstream.ErrUntrustedRealm) {
		t.Errorf("err = %v, want ErrUnavailable and ErrUntrustedRealm", err)
	}
	if n := evil.hits.Load(); n != 0 {
		t.Errorf("the realm on another host was asked %d times", n)
	}
}

// TestRealmOnOperatorListedHost: the same realm is used once the operator
// lists its host in QCI_UPSTREAM_TOKEN_HOSTS.
func TestRealmOnOperatorListedHost(t *testing.T) {
	other := newTokenServer(t)
	f := newFakeUpstream(t)
	f.realmURL = other.srv.URL + "/token"
	otherURL, _ := url.Parse(other.srv.URL)
	tok, err := f.sourceWith(t, upstream.TokenSourceOptions{
		Transport:  other.srv.Client().Transport,
		TokenHosts: []string{otherURL.Hostname()},
	}).Token(context.Background())
	if err != nil || tok != "from-elsewhere" {
		t.Fatalf("token %q, err %v", tok, err)
	}
	if a, _ := other.auth.Load().(string); !strings.HasPrefix(a, "Basic ") {
		t.Errorf("the listed realm got Authorization %q, want the robot's Basic credentials", a)
	}
}

// TestTokenServerRedirectSSRF: the realm on the upstream's own host
// redirects the token request to another host; that host is never reached.
func TestTokenServerRedirectSSRF(t *testing.T) {
	second := newTokenServer(t)
	f := newFakeUpstream(t)
	f.redirectTo = second.srv.URL + "/token"
	_, err := f.sourceWith(t, upstream.TokenSourceOptions{Transport: second.srv.Client().Transport}).Token(context.Background())
	if !errors.Is(err, upstream.ErrUntrustedRealm) {
		t.Errorf("err = %v, want ErrUntrustedRealm", err)
	}
	if n := second.hits.Load(); n != 0 {
		t.Errorf("the redirect target was hit %d times", n)
	}
}

// TestBasicCredentialsOnlyToTheRealmHost: a redirect to a trusted host is
// followed, but the robot's Basic credentials stay with the realm's host.
func TestBasicCredentialsOnlyToTheRealmHost(t *testing.T) {
	second := newTokenServer(t)
	secondURL, _ := url.Parse(second.srv.URL)
	f := newFakeUpstream(t)
	f.redirectTo = second.srv.URL + "/token"
	tok, err := f.sourceWith(t, upstream.TokenSourceOptions{
		Transport:  second.srv.Client().Transport,
		TokenHosts: []string{secondURL.Hostname()},
	}).Token(context.Background())
	if err != nil || tok != "from-elsewhere" {
		t.Fatalf("token %q, err %v", tok, err)
	}
	if a, _ := second.auth.Load().(string); a != "" {
		t.Errorf("the redirect target got Authorization %q", a)
	}
}

func TestConcurrentFirstCallsShareOneFetch(t *testing.T) {
	f := newFakeUpstream(t)
	f.tokenGate = make(chan struct{})
	src := f.source(t, "secret", nil)
	const callers = 100
	var wg sync.WaitGroup
	toks := make(chan string, callers)
	errs := make(chan error, callers)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok, err := src.Token(context.Background())
			if err != nil {
				errs <- err
				return
			}
			toks <- tok
		}()
	}
	close(f.tokenGate) // let the one fetch answer only once every caller is waiting or done
	wg.Wait()
	close(toks)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for tok := range toks {
		if tok != "upstream-token-1" {
			t.Fatalf("got token %q, want upstream-token-1", tok)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Errorf("%d token fetches for %d concurrent callers, want 1", n, callers)
	}
	// Cached afterwards.
	if tok, err := src.Token(context.Background()); err != nil || tok != "upstream-token-1" || f.fetches.Load() != 1 {
		t.Errorf("second call: %q %v, %d fetches", tok, err, f.fetches.Load())
	}
}

func TestCallerContextDoesNotCancelSharedFetch(t *testing.T) {
	f := newFakeUpstream(t)
	f.tokenGate = make(chan struct{})
	src := f.source(t, "secret", nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, err := src.Token(ctx); first <- err }()
	second := make(chan string, 1)
	go func() { tok, _ := src.Token(context.Background()); second <- tok }()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller got %v", err)
	}
	close(f.tokenGate)
	if tok := <-second; tok != "upstream-token-1" {
		t.Errorf("other caller got %q", tok)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	f := newFakeUpstream(t)
	f.expiresIn = 120
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	src := f.source(t, "secret", clock)
	tok1, err := src.Token(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(60 * time.Second) // well within 120 s
	mu.Unlock()
	if tok, _ := src.Token(context.Background()); tok != tok1 {
		t.Errorf("token renewed after 60 s of 120: %q", tok)
	}
	mu.Lock()
	now = now.Add(35 * time.Second) // 95 s: inside the 30 s margin
	mu.Unlock()
	tok2, err := src.Token(context.Background())
	if err != nil || tok2 == tok1 {
		t.Errorf("token not renewed near expiry: %q %v", tok2, err)
	}
}

func TestRobotRefused(t *testing.T) {
	f := newFakeUpstream(t)
	src := f.source(t, "wrong", nil)
	_, err := src.Token(context.Background())
	if !errors.Is(err, upstream.ErrRobotRefused) {
		t.Fatalf("err = %v, want ErrRobotRefused", err)
	}
}

func TestUpstreamDown(t *testing.T) {
	f := newFakeUpstream(t)
	src := f.source(t, "secret", nil)
	f.srv.Close()
	_, err := src.Token(context.Background())
	if !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}

func TestRealmElsewhereOverHTTPGetsNoCredentials(t *testing.T) {
	var got atomic.Int32
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		_, _ = io.WriteString(w, `{"token":"x"}`)
	}))
	defer evil.Close()
	f := newFakeUpstream(t)
	f.realmURL = evil.URL + "/token" // 127.0.0.1: another host name, plain http
	_, err := f.source(t, "secret", nil).Token(context.Background())
	if !errors.Is(err, upstream.ErrUnavailable) {
		t.Errorf("err = %v, want ErrUnavailable", err)
	}
	if got.Load() != 0 {
		t.Errorf("the robot's credentials were sent to %s", evil.URL)
	}
}

func TestNoAuthUpstream(t *testing.T) {
	f := newFakeUpstream(t)
	f.noAuth = true
	tok, err := f.source(t, "secret", nil).Token(context.Background())
	if err != nil || tok != "" || f.fetches.Load() != 0 {
		t.Errorf("token %q err %v fetches %d; want no token and no fetch", tok, err, f.fetches.Load())
	}
}

func TestAuthTransportRetriesOnceAfter401(t *testing.T) {
	f := newFakeUpstream(t)
	src := f.source(t, "secret", nil)
	client := &http.Client{Transport: upstream.NewAuthTransport(upstream.NewTransport(), src)}
	get := func() (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/v2/openshift/ci/manifests/latest", nil)
		req.Header.Set("Authorization", "Bearer client-jwt-must-not-pass")
		return client.Do(req)
	}
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "content of /v2/openshift/ci/manifests/latest" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	f.revokeAll() // the upstream restarted: its tokens are void
	resp, err = get()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.fetches.Load() != 2 {
		t.Errorf("after revocation: %d with %d fetches, want 200 with 2", resp.StatusCode, f.fetches.Load())
	}
	f.mu.Lock()
	for _, seen := range f.seenTokens {
		if strings.Contains(seen, "client-jwt") {
			t.Errorf("upstream saw the client's token %q", seen)
		}
	}
	f.mu.Unlock()
}

func TestAuthTransportGivesUpAfterSecond401(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			_, _ = io.WriteString(w, `{"token":"t","expires_in":300}`)
			return
		}
		if r.URL.Path != "/v2/" {
			hits.Add(1)
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://localhost:`+strings.Split(r.Host, ":")[1]+`/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	u, _ := url.Parse(strings.Replace(srv.URL, "127.0.0.1", "localhost", 1))
	src := upstream.NewTokenSource(upstream.TokenSourceOptions{URL: u, Repository: "openshift/ci", Username: "robot", Password: "p", Transport: upstream.NewTransport()})
	client := &http.Client{Transport: upstream.NewAuthTransport(upstream.NewTransport(), src)}
	_, err := client.Get(u.String() + "/v2/openshift/ci/manifests/latest")
	if !errors.Is(err, upstream.ErrRobotRefused) {
		t.Errorf("err = %v, want ErrRobotRefused", err)
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("upstream got %d tries, want 2 (one retry)", n)
	}
}
