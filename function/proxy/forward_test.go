package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/proxy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

// testProxy is the proxy handler in front of an https upstream, served by a
// real server (so that an aborted body aborts the connection), with its
// logs kept.
type testProxy struct {
	up, px *httptest.Server
	tok    string
	iss    *token.Issuer
	logs   *syncBuffer
	// served gets a value from the wrapper around the handler each time
	// the handler returns (or panics), so a test can wait for it.
	served chan struct{}
	// wrap, when set, wraps the server's ResponseWriter.
	wrap func(http.ResponseWriter) http.ResponseWriter
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newTestProxy(t *testing.T, upstreamHandler http.HandlerFunc) *testProxy {
	t.Helper()
	return newTestProxyWith(t, upstreamHandler, nil)
}

// newTestProxyWith is newTestProxy with edit applied to the proxy's options.
func newTestProxyWith(t *testing.T, upstreamHandler http.HandlerFunc, edit func(*proxy.Options)) *testProxy {
	t.Helper()
	tp := &testProxy{logs: &syncBuffer{}, served: make(chan struct{}, 16)}
	tp.up = httptest.NewTLSServer(upstreamHandler)
	t.Cleanup(tp.up.Close)
	upURL, _ := url.Parse(tp.up.URL)
	keys, err := token.NewKeys([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	public, _ := publicurl.New("")
	opts := proxy.Options{
		Repository: repo,
		Upstream:   upURL,
		Keys:       keys,
		Public:     public,
		Transport:  tp.up.Client().Transport,
		Logger:     slog.New(slog.NewTextHandler(tp.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&opts)
	}
	h := proxy.New(opts)
	tp.px = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { tp.served <- struct{}{} }()
		if tp.wrap != nil {
			w = tp.wrap(w)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tp.px.Close)
	tp.iss = &token.Issuer{Keys: keys, AccessTTL: time.Hour}
	tp.tok = tp.token(t, registry.PullScope(repo))
	return tp
}

// token issues an access token for the proxy's host with the given scopes.
func (tp *testProxy) token(t *testing.T, scopes ...registry.Scope) string {
	t.Helper()
	tok, err := tp.iss.Access(tp.host(), token.Subject{Name: "robot", Login: token.LoginRobot}, scopes, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok.Raw
}

func (tp *testProxy) host() string { return strings.TrimPrefix(tp.px.URL, "http://") }

// do sends a request with the pull token and the given headers, and does
// not follow redirects.
func (tp *testProxy) do(t *testing.T, method, path string, hdr http.Header) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, tp.px.URL+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+tp.tok)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestForwardedHeadersAreAllowlisted: of everything a client sends, only
// the headers registry clients send on reads reach the upstream.
func TestForwardedHeadersAreAllowlisted(t *testing.T) {
	got := make(chan http.Header, 1)
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	})
	hdr := http.Header{
		"Accept":                          {"application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json"},
		"Range":                           {"bytes=10-19"},
		"If-None-Match":                   {`"sha256:abc"`},
		"If-Modified-Since":               {"Tue, 01 Dec 2026 07:00:00 GMT"},
		"If-Range":                        {`"sha256:abc"`},
		"User-Agent":                      {"containers/5.36 (github.com/containers/image)"},
		"Docker-Distribution-Api-Version": {"registry/2.0"},
		"X-Http-Method-Override":          {"DELETE"},
		"X-Original-Url":                  {"/v2/other/repo/manifests/latest"},
		"X-Rewrite-Url":                   {"/v2/_catalog"},
		"Forwarded":                       {"for=1.2.3.4;host=evil.example"},
		"X-Forwarded-Host":                {"evil.example"},
		"X-Forwarded-Prefix":              {"/admin"},
		"X-Real-Ip":                       {"1.2.3.4"},
		"Cookie":                          {"session=client"},
		"Proxy-Authorization":             {"Basic c2VjcmV0"},
	}
	for i := range 2000 {
		hdr["X-Junk-"+strconv.Itoa(i)] = []string{"v"}
	}
	resp := tp.do(t, http.MethodGet, "/v2/"+repo+"/manifests/latest", hdr)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	up := <-got
	want := http.Header{
		"Accept":                          hdr["Accept"],
		"Range":                           hdr["Range"],
		"If-None-Match":                   hdr["If-None-Match"],
		"If-Modified-Since":               hdr["If-Modified-Since"],
		"If-Range":                        hdr["If-Range"],
		"User-Agent":                      hdr["User-Agent"],
		"Docker-Distribution-Api-Version": hdr["Docker-Distribution-Api-Version"],
	}
	// What the upstream's server and Go's transport add on the wire.
	delete(up, "Accept-Encoding")
	for k, v := range up {
		if w, ok := want[k]; !ok || strings.Join(w, "\n") != strings.Join(v, "\n") {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
	for k := range want {
		if _, ok := up[k]; !ok {
			t.Errorf("upstream did not get %s", k)
		}
	}
}

// TestForwardedQueryIsTheRoute's: only the query parameters the
// distribution spec defines for the route go upstream; our own JWT in
// ?access_token= never does.
func TestForwardedQueryIsTheRoutes(t *testing.T) {
	got := make(chan string, 1)
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.RawQuery
	})
	digest := "sha256:" + strings.Repeat("a", 64)
	for _, tc := range []struct{ path, want string }{
		{"/v2/" + repo + "/tags/list?n=100&last=abc&access_token=" + tp.tok + "&x=1", "last=abc&n=100"},
		{"/v2/" + repo + "/tags/list", ""},
		{"/v2/" + repo + "/referrers/" + digest + "?artifactType=application%2Fvnd.example%2Bjson&n=1&access_token=" + tp.tok, "artifactType=application%2Fvnd.example%2Bjson"},
		{"/v2/" + repo + "/manifests/latest?access_token=" + tp.tok + "&n=1", ""},
		{"/v2/" + repo + "/blobs/" + digest + "?access_token=" + tp.tok + "&digest=x", ""},
	} {
		resp := tp.do(t, http.MethodGet, tc.path, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", tc.path, resp.StatusCode)
		}
		if q := <-got; q != tc.want {
			t.Errorf("%s: upstream got query %q, want %q", tc.path, q, tc.want)
		}
	}
}

// TestResponseURLs is a TestProxyTransport-style table: what the upstream
// answers in Location and Link, and what the client gets.
func TestResponseURLs(t *testing.T) {
	var mu sync.Mutex
	var location, link []string
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header()["Location"] = location
		w.Header()["Link"] = link
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://`+r.Host+`/v2/auth"`)
		w.Header().Set("Set-Cookie", "upstream=session")
		if location != nil {
			w.WriteHeader(http.StatusFound)
		}
	})
	upHost := strings.TrimPrefix(tp.up.URL, "https://")
	upHostname, upPort, _ := strings.Cut(upHost, ":")
	ours := "http://" + tp.host()
	for _, tc := range []struct {
		name                   string
		location, link         []string
		wantLocation, wantLink []string
	}{
		{name: "redirect on the upstream's host",
			location:     []string{"https://" + upHost + "/v2/" + repo + "/blobs/sha256:" + strings.Repeat("b", 64) + "?x=1"},
			wantLocation: []string{ours + "/v2/" + repo + "/blobs/sha256:" + strings.Repeat("b", 64) + "?x=1"}},
		{name: "redirect on the upstream's host, other case",
			location:     []string{"https://" + strings.ToUpper(upHostname) + ":" + upPort + "/v2/x"},
			wantLocation: []string{ours + "/v2/x"}},
		{name: "pre-signed storage redirect",
			location:     []string{"https://cdn.example.com/sha256/bb?X-Amz-Signature=abc&X-Amz-Expires=600"},
			wantLocation: []string{"https://cdn.example.com/sha256/bb?X-Amz-Signature=abc&X-Amz-Expires=600"}},
		{name: "same host name, other port",
			location:     []string{"https://" + upHostname + ":1/v2/x"},
			wantLocation: []string{"https://" + upHostname + ":1/v2/x"}},
		{name: "relative redirect",
			location:     []string{"/v2/" + repo + "/blobs/x"},
			wantLocation: []string{"/v2/" + repo + "/blobs/x"}},
		{name: "quay's storage proxy on its own host passes untouched",
			location:     []string{"https://" + upHost + "/_storage_proxy/eyJhbGciOi/direct/s3/us/sha256/bb?sig=1"},
			wantLocation: []string{"https://" + upHost + "/_storage_proxy/eyJhbGciOi/direct/s3/us/sha256/bb?sig=1"}},
		{name: "relative redirect outside /v2/ is made absolute on the upstream",
			location:     []string{"/_storage_proxy/eyJhbGciOi/direct/s3/us/sha256/bb"},
			wantLocation: []string{"https://" + upHost + "/_storage_proxy/eyJhbGciOi/direct/s3/us/sha256/bb"}},
		{name: "quay's absolute Link",
			link:     []string{`<https://` + upHost + `/v2/openshift/ci/tags/list?n=100&last=abc>; rel="next"`},
			wantLink: []string{`<` + ours + `/v2/openshift/ci/tags/list?n=100&last=abc>; rel="next"`}},
		{name: "distribution's relative Link",
			link:     []string{`</v2/openshift/ci/tags/list?last=abc&n=100>; rel="next"`},
			wantLink: []string{`</v2/openshift/ci/tags/list?last=abc&n=100>; rel="next"`}},
		{name: "Link to another host is dropped",
			link: []string{`<https://evil.example.com/v2/openshift/ci/tags/list?n=100&last=abc>; rel="next"`}},
		{name: "Link over another scheme is dropped",
			link: []string{`<http://` + upHost + `/v2/openshift/ci/tags/list?last=abc>; rel="next"`}},
		{name: "one Link value of two kept",
			link:     []string{`<https://evil.example.com/x>; rel="prev", <https://` + upHost + `/v2/openshift/ci/tags/list?last=b,c>; rel="next"; title="a, b"`},
			wantLink: []string{`<` + ours + `/v2/openshift/ci/tags/list?last=b,c>; rel="next"; title="a, b"`}},
		{name: "unparsable Link is dropped",
			link: []string{`https://` + upHost + `/v2/x; rel="next"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			location, link = tc.location, tc.link
			mu.Unlock()
			resp := tp.do(t, http.MethodGet, "/v2/"+repo+"/tags/list", nil)
			if got := resp.Header["Location"]; strings.Join(got, "\n") != strings.Join(tc.wantLocation, "\n") {
				t.Errorf("Location %q, want %q", got, tc.wantLocation)
			}
			if got := resp.Header["Link"]; strings.Join(got, "\n") != strings.Join(tc.wantLink, "\n") {
				t.Errorf("Link %q, want %q", got, tc.wantLink)
			}
			if resp.Header.Get("Www-Authenticate") != "" || resp.Header.Get("Set-Cookie") != "" {
				t.Errorf("the upstream's challenge or cookie reached the client: %v", resp.Header)
			}
		})
	}
}

// TestClientHangUpIsNotBlamedOnTheUpstream: a client that goes away
// mid-blob is not logged as an upstream failure; an upstream that breaks
// mid-body is.
func TestClientHangUpIsNotBlamedOnTheUpstream(t *testing.T) {
	upstreamDone := make(chan struct{})
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		defer close(upstreamDone)
		w.Header().Set("Content-Length", strconv.Itoa(1<<30))
		chunk := make([]byte, 32<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				return // the proxy let go of the upstream
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tp.px.URL+blobPath, nil)
	req.Header.Set("Authorization", "Bearer "+tp.tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	cancel() // the client hangs up mid-blob
	resp.Body.Close()
	<-tp.served
	<-upstreamDone
	logs := tp.logs.String()
	if strings.Contains(logs, "upstream body broke") || strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("a client's hang-up was logged as a failure:\n%s", logs)
	}
	if !strings.Contains(logs, "client went away") {
		t.Errorf("no debug line for the client's hang-up:\n%s", logs)
	}
}

// brokenPipe is a client connection that breaks after limit bytes: its
// writes fail before the server has noticed anything (the request's
// context is still live), as a write into a reset TCP connection does.
type brokenPipe struct {
	http.ResponseWriter
	limit int
}

func (b *brokenPipe) Write(p []byte) (int, error) {
	if b.limit -= len(p); b.limit < 0 {
		return 0, errors.New("write: broken pipe")
	}
	return b.ResponseWriter.Write(p)
}

func (b *brokenPipe) Flush() { b.ResponseWriter.(http.Flusher).Flush() }

// TestClientWriteFailureIsNotBlamedOnTheUpstream: the same when the write
// to the client fails while the request's context is still live.
func TestClientWriteFailureIsNotBlamedOnTheUpstream(t *testing.T) {
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(8<<20))
		_, _ = w.Write(make([]byte, 8<<20))
	})
	tp.wrap = func(w http.ResponseWriter) http.ResponseWriter { return &brokenPipe{ResponseWriter: w, limit: 1 << 20} }
	resp := tp.do(t, http.MethodGet, blobPath, nil)
	if n, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Errorf("the client read %d bytes and a clean end", n)
	}
	<-tp.served
	logs := tp.logs.String()
	if strings.Contains(logs, "upstream body broke") || strings.Contains(logs, "level=WARN") || strings.Contains(logs, "level=ERROR") {
		t.Errorf("a client's broken pipe was logged as a failure:\n%s", logs)
	}
}

// TestUpstreamBreakIsLogged: the same body broken by the upstream is
// logged as the upstream's failure, and the client sees an error.
func TestUpstreamBreakIsLogged(t *testing.T) {
	tp := newTestProxy(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		_, _ = w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	resp := tp.do(t, http.MethodGet, blobPath, nil)
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Error("the client read a clean end of a broken body")
	} else if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("client error: %v", err)
	}
	<-tp.served
	if logs := tp.logs.String(); !strings.Contains(logs, "upstream body broke mid-stream") {
		t.Errorf("the upstream's failure was not logged:\n%s", logs)
	}
}
