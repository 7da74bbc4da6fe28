package upstream_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qci-appci/qci-appci/function/upstream"
)

// TestSpliceTransportReusesAndRecovers: blob GETs share a kept-alive
// connection, a connection the upstream closed is replaced without an error,
// and other requests go to the fallback transport.
func TestSpliceTransportReusesAndRecovers(t *testing.T) {
	var conns atomic.Int32
	var mu sync.Mutex
	var open []net.Conn
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "body of "+r.URL.Path)
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	var fallback atomic.Int32
	tr := upstream.NewSpliceTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		fallback.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	}))
	client := &http.Client{Transport: tr}
	get := func(path string) string {
		t.Helper()
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		if _, err := io.Copy(&sb, resp.Body); err != nil {
			t.Fatal(err)
		}
		return sb.String()
	}
	for range 3 {
		if got := get("/v2/r/blobs/sha256:1"); got != "body of /v2/r/blobs/sha256:1" {
			t.Fatalf("got %q", got)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 3 sequential blob GETs, want 1", n)
	}
	mu.Lock()
	for _, c := range open {
		_ = c.Close() // the upstream drops its idle connections
	}
	mu.Unlock()
	if got := get("/v2/r/blobs/sha256:2"); got != "body of /v2/r/blobs/sha256:2" {
		t.Errorf("after the upstream closed the idle connection: %q", got)
	}
	if fallback.Load() != 0 {
		t.Errorf("blob GETs went to the fallback")
	}
	get("/v2/r/manifests/latest")
	if fallback.Load() != 1 {
		t.Errorf("a manifest GET did not go to the fallback")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
