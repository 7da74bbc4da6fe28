package proxy_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/qci-appci/qci-appci/function/manifestcache"
	"github.com/qci-appci/qci-appci/function/proxy"
	"github.com/qci-appci/qci-appci/function/registry"
)

const ociManifest = "application/vnd.oci.image.manifest.v1+json"

// manifestUpstream answers manifest GETs and HEADs with body, whatever the
// reference, claiming claimed as its Docker-Content-Digest, and counts the
// requests it gets.
type manifestUpstream struct {
	hits    atomic.Int32
	mu      sync.Mutex
	body    []byte
	claimed string
	status  int
	broken  bool // end the body early, with a Content-Length promising all
}

func (m *manifestUpstream) serve(w http.ResponseWriter, r *http.Request) {
	m.hits.Add(1)
	m.mu.Lock()
	body, claimed, status, broken := m.body, m.claimed, m.status, m.broken
	m.mu.Unlock()
	w.Header().Set("Content-Type", ociManifest)
	w.Header().Set("Docker-Content-Digest", claimed)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if broken {
		_, _ = w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(body)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func cachedProxy(t *testing.T, maxBytes int64) (*testProxy, *manifestUpstream, *manifestcache.Cache) {
	t.Helper()
	m := &manifestUpstream{body: []byte(`{"schemaVersion":2,"mediaType":"` + ociManifest + `","config":{},"layers":[]}`)}
	m.claimed = sha(m.body)
	cache := manifestcache.New(maxBytes)
	tp := newTestProxyWith(t, m.serve, func(o *proxy.Options) { o.Manifests = cache })
	return tp, m, cache
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestManifestCacheHitMakesNoUpstreamRequest: the second GET, and a HEAD,
// of a manifest by digest are answered here, with the bytes and the
// headers a client needs.
func TestManifestCacheHitMakesNoUpstreamRequest(t *testing.T) {
	tp, m, cache := cachedProxy(t, 1<<20)
	d := m.claimed
	path := "/v2/" + repo + "/manifests/" + d
	accept := http.Header{"Accept": {ociManifest, "application/vnd.docker.distribution.manifest.v2+json"}}
	first := tp.do(t, http.MethodGet, path, accept)
	if body := readAll(t, first); first.StatusCode != 200 || body != string(m.body) {
		t.Fatalf("first GET: %d %q", first.StatusCode, body)
	}
	if m.hits.Load() != 1 || cache.Len() != 1 {
		t.Fatalf("after the first GET: %d upstream requests, %d cached", m.hits.Load(), cache.Len())
	}
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodGet} {
		resp := tp.do(t, method, path, accept)
		body := readAll(t, resp)
		want := string(m.body)
		if method == http.MethodHead {
			want = ""
		}
		if resp.StatusCode != 200 || body != want {
			t.Errorf("%s hit: %d %q", method, resp.StatusCode, body)
		}
		if resp.Header.Get("Content-Type") != ociManifest || resp.Header.Get("Docker-Content-Digest") != d ||
			resp.Header.Get("Content-Length") != strconv.Itoa(len(m.body)) || resp.Header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
			t.Errorf("%s hit headers: %v", method, resp.Header)
		}
	}
	if n := m.hits.Load(); n != 1 {
		t.Errorf("%d upstream requests, want 1: hits went upstream", n)
	}
	// Not for a tag, a Range, or a client that does not accept the type.
	for _, tc := range []struct {
		path string
		hdr  http.Header
	}{
		{"/v2/" + repo + "/manifests/latest", nil},
		{path, http.Header{"Range": {"bytes=0-1"}}},
		{path, http.Header{"If-None-Match": {`"` + d + `"`}}},
		{path, http.Header{"Accept": {"application/vnd.docker.distribution.manifest.list.v2+json"}}},
	} {
		before := m.hits.Load()
		readAll(t, tp.do(t, http.MethodGet, tc.path, tc.hdr))
		if m.hits.Load() != before+1 {
			t.Errorf("GET %s %v was answered from the cache", tc.path, tc.hdr)
		}
	}
}

// TestManifestCacheKeepsOnlyVerifiedBodies: a body whose sha256 is not the
// digest in the path is never kept, however the upstream labels it, and
// the client still gets the upstream's bytes; neither is a broken body or
// an error answer.
func TestManifestCacheKeepsOnlyVerifiedBodies(t *testing.T) {
	tp, m, cache := cachedProxy(t, 1<<20)
	asked := sha([]byte("another manifest"))
	m.mu.Lock()
	m.claimed = asked // the forged header: the digest asked, not the body's
	m.mu.Unlock()
	path := "/v2/" + repo + "/manifests/" + asked
	for i := range 2 {
		resp := tp.do(t, http.MethodGet, path, nil)
		if body := readAll(t, resp); resp.StatusCode != 200 || body != string(m.body) {
			t.Errorf("GET %d: %d %q, want the upstream's bytes", i, resp.StatusCode, body)
		}
	}
	if n := m.hits.Load(); n != 2 || cache.Len() != 0 {
		t.Errorf("%d upstream requests and %d entries: a mismatching body was kept", n, cache.Len())
	}

	real := sha(m.body)
	m.mu.Lock()
	m.claimed, m.broken = real, true
	m.mu.Unlock()
	resp := tp.do(t, http.MethodGet, "/v2/"+repo+"/manifests/"+real, nil)
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("a broken body read as complete")
	}
	<-tp.served
	if cache.Len() != 0 {
		t.Error("a broken body was kept")
	}
	m.mu.Lock()
	m.broken, m.status = false, http.StatusNotFound
	m.mu.Unlock()
	readAll(t, tp.do(t, http.MethodGet, "/v2/"+repo+"/manifests/"+real, nil))
	if cache.Len() != 0 {
		t.Error("a 404 was kept")
	}
}

// TestManifestCacheIsBehindEveryCheck: a cached manifest is given only to a
// request that passes every check: method, token, path, scope.
func TestManifestCacheIsBehindEveryCheck(t *testing.T) {
	tp, m, _ := cachedProxy(t, 1<<20)
	d := m.claimed
	path := "/v2/" + repo + "/manifests/" + d
	if resp := tp.do(t, http.MethodGet, path, nil); resp.StatusCode != 200 {
		t.Fatalf("warming GET: %d", resp.StatusCode)
	}
	noPull := tp.token(t)
	otherRepo := tp.token(t, registry.PullScope("openshift/other"))
	for _, tc := range []struct {
		name, method, path, auth string
		status                   int
	}{
		{"no token", http.MethodGet, path, "", http.StatusUnauthorized},
		{"garbage token", http.MethodGet, path, "Bearer garbage", http.StatusUnauthorized},
		{"a token of ours with a bad signature", http.MethodGet, path, "Bearer " + tp.tok[:len(tp.tok)-2] + "xx", http.StatusUnauthorized},
		{"no pull in the token", http.MethodGet, path, "Bearer " + noPull, http.StatusUnauthorized},
		{"pull on another repository", http.MethodHead, path, "Bearer " + otherRepo, http.StatusUnauthorized},
		{"another repository's path", http.MethodGet, "/v2/openshift/other/manifests/" + d, "Bearer " + tp.tok, http.StatusNotFound},
		{"a write", http.MethodPut, path, "Bearer " + tp.tok, http.StatusMethodNotAllowed},
		{"a delete", http.MethodDelete, path, "Bearer " + tp.tok, http.StatusMethodNotAllowed},
	} {
		req, _ := http.NewRequest(tc.method, tp.px.URL+tc.path, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || strings.Contains(string(body), "schemaVersion") || resp.Header.Get("Docker-Content-Digest") != "" {
			t.Errorf("%s: %d %q, want %d and no manifest", tc.name, resp.StatusCode, body, tc.status)
		}
	}
	if n := m.hits.Load(); n != 1 {
		t.Errorf("%d upstream requests, want only the warming one", n)
	}
}
