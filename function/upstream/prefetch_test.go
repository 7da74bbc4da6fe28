package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestPrefetchBacksOffAfterAFailure: after a failed fetch, Prefetch starts
// none for prefetchBackoff (a flood of /v2/ probes must not become robot
// logins upstream), then does again; a cached token needs none. A caller
// of Token is never held back.
func TestPrefetchBacksOffAfterAFailure(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	var tokenRequests atomic.Int32
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			tokenRequests.Add(1)
			if refuse.Load() {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_, _ = io.WriteString(w, `{"token":"t","expires_in":300}`)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+srv.URL+`/token"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	s := NewTokenSource(TokenSourceOptions{URL: u, Repository: "openshift/ci", Username: "robot", Password: "p", Transport: http.DefaultTransport, Now: clock})

	if !s.prefetchDue() {
		t.Fatal("a fresh source does not prefetch")
	}
	if _, err := s.Token(context.Background()); err == nil {
		t.Fatal("a refused robot got a token")
	}
	if s.prefetchDue() {
		t.Error("prefetch due right after a failure")
	}
	mu.Lock()
	now = now.Add(prefetchBackoff - time.Second)
	mu.Unlock()
	if s.prefetchDue() {
		t.Error("prefetch due within the backoff")
	}
	refuse.Store(false)
	if tok, err := s.Token(context.Background()); err != nil || tok != "t" {
		t.Fatalf("Token within the backoff: %q %v; a caller must not be held back", tok, err)
	}
	if s.prefetchDue() {
		t.Error("prefetch due with a cached token")
	}
	if n := tokenRequests.Load(); n != 2 {
		t.Errorf("%d token requests, want 2", n)
	}
}
