package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/cmd/internal/server"
	"github.com/qci-appci/qci-appci/function/requestinfo"
)

func TestAccessLogLine(t *testing.T) {
	var buf bytes.Buffer
	access := server.NewAccessLog(&buf)
	h := access.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requestinfo.SetUser(r.Context(), "alice")
		requestinfo.SetUpstreamStatus(r.Context(), 206)
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "0123456789")
	}))
	req, _ := http.NewRequest(http.MethodGet, "http://x/v2/openshift/ci/blobs/sha256:ab?secret=1", nil)
	req.Header.Set("Authorization", "Bearer s3cr3t-token")
	req.RemoteAddr = "192.0.2.7:51234"
	rec := &discard{header: http.Header{}}
	h.ServeHTTP(rec, req)
	access.Close()
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not one JSON line: %q", buf.String())
	}
	hr, _ := line["httpRequest"].(map[string]any)
	if line["severity"] != "INFO" || line["message"] != "request" || line["user"] != "alice" || line["upstream_status"] != float64(206) ||
		hr["status"] != float64(206) || hr["responseSize"] != "10" || hr["requestMethod"] != "GET" || hr["requestUrl"] != "/v2/openshift/ci/blobs/sha256:ab" || hr["remoteIp"] != "192.0.2.7" {
		t.Errorf("line = %s", buf.String())
	}
	if strings.Contains(buf.String(), "s3cr3t") {
		t.Errorf("the token reached the log: %s", buf.String())
	}
}

type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

// TestServeDrains: after the context ends, a request in flight finishes and
// new connections are refused.
func TestServeDrains(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	started := make(chan struct{})
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, "done")
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- server.Serve(ctx, ln, h, server.NewLogger(io.Discard)) }()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-started
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // refused: the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if body := <-got; body != "done" {
		t.Errorf("in-flight request got %q", body)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

// gatedWriter blocks every Write until open is closed, and keeps what was
// written.
type gatedWriter struct {
	open   chan struct{}
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	g.writes++
	return g.buf.Write(p)
}

// TestAccessLogLosesNothing: lines from many concurrent requests, more
// than the writer may hold back while its output is blocked, all arrive
// whole once the output moves again, each request's own in order; Close
// writes what is left, and a request after Close is still logged.
func TestAccessLogLosesNothing(t *testing.T) {
	out := &gatedWriter{open: make(chan struct{})}
	access := server.NewAccessLog(out)
	h := access.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	const clients, each = 8, 400 // about 1.3 MiB of lines, over the 1 MiB held back
	path := "/v2/openshift/ci/manifests/" + strings.Repeat("x", 300)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				req, _ := http.NewRequest(http.MethodGet, "http://x"+path+"/"+strconv.Itoa(c)+"/"+strconv.Itoa(i), nil)
				h.ServeHTTP(&discard{header: http.Header{}}, req)
			}
		})
	}
	close(out.open)
	wg.Wait()
	access.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://x/after/close", nil)
	h.ServeHTTP(&discard{header: http.Header{}}, req)

	next := make([]int, clients)
	lines := strings.Split(strings.TrimSuffix(out.buf.String(), "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		var line struct {
			HTTPRequest struct {
				RequestURL string `json:"requestUrl"`
			} `json:"httpRequest"`
		}
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("broken line %q: %v", l, err)
		}
		parts := strings.Split(strings.TrimPrefix(line.HTTPRequest.RequestURL, path+"/"), "/")
		c, _ := strconv.Atoi(parts[0])
		i, _ := strconv.Atoi(parts[1])
		if i != next[c] {
			t.Fatalf("client %d: line %d after %d", c, i, next[c]-1)
		}
		next[c]++
	}
	for c, n := range next {
		if n != each {
			t.Errorf("client %d: %d lines, want %d", c, n, each)
		}
	}
	if !strings.Contains(lines[len(lines)-1], `"/after/close"`) {
		t.Errorf("last line %q, want the request after Close", lines[len(lines)-1])
	}
	if out.writes >= clients*each {
		t.Logf("%d writes for %d lines: no batching happened", out.writes, clients*each)
	}
}

// TestAbortReachesHTTP2Clients: a handler that aborts mid-body (the proxy
// does when the upstream breaks) gives an h2c client an error, not a clean
// end, through the access log's recover and Serve.
func TestAbortReachesHTTP2Clients(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	access := server.NewAccessLog(io.Discard)
	defer access.Close()
	h := access.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No Content-Length: only the abort tells the client the answer
		// is broken.
		_, _ = w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = server.Serve(ctx, ln, h, server.NewLogger(io.Discard)) }()
	for _, h2 := range []bool{false, true} {
		var p http.Protocols
		p.SetHTTP1(!h2)
		p.SetUnencryptedHTTP2(h2)
		client := &http.Client{Transport: &http.Transport{Protocols: &p}}
		resp, err := client.Get("http://" + ln.Addr().String() + "/v2/openshift/ci/blobs/x")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Errorf("%s: read %d bytes and a clean end of an aborted answer", resp.Proto, n)
		}
	}
}
