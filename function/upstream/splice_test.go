package upstream_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/upstream"
)

// TestSpliceTransportReusesAndRecovers: GETs and HEADs share kept-alive
// connections (a HEAD's Content-Length is not read as a body), idle
// connections the upstream closed are replaced without an error however
// many there are, and requests with a body go to the fallback transport.
func TestSpliceTransportReusesAndRecovers(t *testing.T) {
	var conns atomic.Int32
	var mu sync.Mutex
	var open []net.Conn
	var barrier sync.WaitGroup
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/together") {
			barrier.Done()
			barrier.Wait()
		}
		_, _ = io.WriteString(w, "body of "+r.Method+" "+r.URL.Path)
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
	do := func(method, path string) (string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var sb strings.Builder
		if _, err := io.Copy(&sb, resp.Body); err != nil {
			t.Fatal(err)
		}
		return sb.String(), resp
	}
	for _, p := range []string{"/v2/r/blobs/sha256:1", "/v2/r/manifests/latest", "/v2/r/blobs/sha256:1"} {
		if got, _ := do(http.MethodGet, p); got != "body of GET "+p {
			t.Fatalf("GET %s: %q", p, got)
		}
		body, resp := do(http.MethodHead, p)
		if body != "" || resp.ContentLength != int64(len("body of HEAD "+p)) {
			t.Fatalf("HEAD %s: body %q, Content-Length %d", p, body, resp.ContentLength)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for 6 sequential GETs and HEADs, want 1", n)
	}

	// Three connections at once, all idle afterwards; the upstream then
	// closes every one of them.
	barrier.Add(3)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, err := client.Get(srv.URL + "/v2/r/blobs/together")
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	mu.Lock()
	for _, c := range open {
		_ = c.Close()
	}
	mu.Unlock()
	if got, _ := do(http.MethodGet, "/v2/r/blobs/sha256:2"); got != "body of GET /v2/r/blobs/sha256:2" {
		t.Errorf("after the upstream closed its idle connections: %q", got)
	}
	if fallback.Load() != 0 {
		t.Errorf("%d GETs or HEADs went to the fallback", fallback.Load())
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v2/r/blobs/uploads/", strings.NewReader("x"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if fallback.Load() != 1 {
		t.Errorf("a POST did not go to the fallback")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSpliceTransportWritesTheRequest: what the upstream receives is the
// request as sent: method, path and query, Host, every header value, no
// User-Agent when it is empty, and nothing that could split the request.
func TestSpliceTransportWritesTheRequest(t *testing.T) {
	type seen struct {
		method, uri, host string
		header            http.Header
		length            int64
		encoding          []string
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), r.ContentLength, r.TransferEncoding}
	}))
	defer srv.Close()
	tr := upstream.NewSpliceTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Fatalf("fallback used for %s %s", r.Method, r.URL)
		return nil, nil
	}))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/openshift/ci/tags/list?n=10&last=a%2Fb", nil)
	req.Header["Accept"] = []string{"application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json"}
	req.Header.Set("Range", "bytes=10-19")
	req.Header.Set("Authorization", "Bearer upstream-token")
	req.Header["User-Agent"] = []string{""}
	req.Header["X-Smuggled"] = []string{"a\r\nGET /admin HTTP/1.1"}
	req.Header["Content-Length"] = []string{"10"} // a client's framing headers are not the upstream request's
	req.Header["Transfer-Encoding"] = []string{"chunked"}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	if s.method != "GET" || s.uri != "/v2/openshift/ci/tags/list?n=10&last=a%2Fb" || s.host != strings.TrimPrefix(srv.URL, "http://") {
		t.Errorf("request line and Host: %s %s, Host %s", s.method, s.uri, s.host)
	}
	if a := s.header["Accept"]; len(a) != 2 || a[0] != "application/vnd.oci.image.index.v1+json" || a[1] != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("Accept = %q", a)
	}
	if s.header.Get("Range") != "bytes=10-19" || s.header.Get("Authorization") != "Bearer upstream-token" {
		t.Errorf("headers = %v", s.header)
	}
	if _, ok := s.header["User-Agent"]; ok {
		t.Errorf("User-Agent %q sent, want none", s.header.Get("User-Agent"))
	}
	if s.length != 0 || len(s.encoding) > 0 {
		t.Errorf("framing headers sent: %v", s.header)
	}
	if _, ok := s.header["X-Smuggled"]; ok {
		t.Errorf("a header value with a line break was sent: %q", s.header["X-Smuggled"])
	}
}

// TestSpliceTransportSkipsInformationalAnswers: a 103 Early Hints before
// the answer is skipped, and the connection's next request gets its own
// answer, not the previous one's.
func TestSpliceTransportSkipsInformationalAnswers(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</v2/>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "answer to "+r.URL.Path)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: upstream.NewSpliceTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Fatalf("fallback used for %s %s", r.Method, r.URL)
		return nil, nil
	}))}
	for _, p := range []string{"/v2/r/manifests/a", "/v2/r/manifests/b", "/v2/r/manifests/c"} {
		resp, err := client.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(b) != "answer to "+p {
			t.Fatalf("GET %s: %d %q %v", p, resp.StatusCode, b, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1 kept alive", n)
	}
}

// TestSpliceTransportHonoursTheProxy: when the fallback transport names an
// HTTP proxy for the upstream (HTTP_PROXY), requests go through it, not
// straight to the upstream.
func TestSpliceTransportHonoursTheProxy(t *testing.T) {
	var direct, proxied atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		direct.Add(1)
		_, _ = io.WriteString(w, "from the upstream")
	}))
	defer up.Close()
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied.Add(1)
		_, _ = io.WriteString(w, "through the proxy to "+r.URL.String())
	}))
	defer proxy.Close()
	proxyURL, _ := url.Parse(proxy.URL)
	client := &http.Client{Transport: upstream.NewSpliceTransport(&http.Transport{Proxy: http.ProxyURL(proxyURL)})}
	resp, err := client.Get(up.URL + "/v2/r/blobs/sha256:1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "through the proxy to "+up.URL+"/v2/r/blobs/sha256:1" || proxied.Load() != 1 || direct.Load() != 0 {
		t.Errorf("got %q; proxy saw %d requests, upstream %d directly", b, proxied.Load(), direct.Load())
	}
}

// TestSpliceTransportHeaderTimeout: an upstream that takes a request and
// never answers fails it after the fallback's ResponseHeaderTimeout, and
// the request is not sent again on another connection.
func TestSpliceTransportHeaderTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int32
	hang := make(chan struct{})
	defer close(hang)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					if i > 0 {
						<-hang // the second request on a connection is never answered
						return
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	tr := upstream.NewSpliceTransport(&http.Transport{ResponseHeaderTimeout: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func() (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String()+"/v2/r/manifests/a", nil)
		return tr.RoundTrip(req)
	}
	resp, err := get()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, err = get()
	if !errors.Is(err, os.ErrDeadlineExceeded) || ctx.Err() != nil {
		t.Errorf("error %v, want the header timeout", err)
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d connections: the timed-out request was sent again", n)
	}
}

// TestSpliceTransportBoundsTheAnswerHead: an upstream whose header lines
// do not end fails the request instead of growing the proxy's memory.
func TestSpliceTransportBoundsTheAnswerHead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
		line := "X-Filler: " + strings.Repeat("x", 1000) + "\r\n"
		for i := 0; i < 4096; i++ { // 4 MiB of header
			if _, err := io.WriteString(c, line); err != nil {
				return
			}
		}
	}()
	tr := upstream.NewSpliceTransport(http.DefaultTransport)
	req, _ := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/v2/r/manifests/a", nil)
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("a 4 MiB answer head was accepted: %d", resp.StatusCode)
	}
	if !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Errorf("error %v, want the head limit", err)
	}
}
