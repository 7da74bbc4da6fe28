package proxy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/proxy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

const repo = "openshift/ci"

var blobPath = "/v2/" + repo + "/blobs/sha256:" + strings.Repeat("a", 64)

// tlsProxy serves the proxy handler in front of an https upstream, the
// production path, and returns the proxy's URL and a pull token for it.
func tlsProxy(t *testing.T, upstreamHandler http.HandlerFunc) (string, string) {
	t.Helper()
	up := httptest.NewTLSServer(upstreamHandler)
	t.Cleanup(up.Close)
	upURL, _ := url.Parse(up.URL)
	keys, err := token.NewKeys([][]byte{[]byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	public, _ := publicurl.New("")
	h := proxy.New(proxy.Options{
		Repository: repo,
		Upstream:   upURL,
		Keys:       keys,
		Public:     public,
		Transport:  up.Client().Transport,
		Logger:     slog.New(slog.DiscardHandler),
	})
	px := httptest.NewServer(h)
	t.Cleanup(px.Close)
	host := strings.TrimPrefix(px.URL, "http://")
	iss := &token.Issuer{Keys: keys, AccessTTL: time.Hour}
	tok, err := iss.Access(host, token.Subject{Name: "robot", Login: token.LoginRobot}, []registry.Scope{registry.PullScope(repo)}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return px.URL, tok.Raw
}

func get(t *testing.T, url, tok string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestHTTPSUpstreamBlob: a blob from an https upstream arrives whole, with
// the upstream's headers but not its challenge or cookie, and the upstream
// never sees the client's token.
func TestHTTPSUpstreamBlob(t *testing.T) {
	blob := make([]byte, 3<<20+17)
	_, _ = rand.Read(blob)
	gotAuth := make(chan string, 1)
	pxURL, tok := tlsProxy(t, func(w http.ResponseWriter, r *http.Request) {
		gotAuth <- r.Header.Get("Authorization")
		w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("a", 64))
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://upstream.example/auth"`)
		w.Header().Set("Set-Cookie", "upstream=session")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	})
	resp := get(t, pxURL+blobPath, tok)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !bytes.Equal(body, blob) || resp.ContentLength != int64(len(blob)) {
		t.Fatalf("status %d, %d bytes (Content-Length %d), want 200 and the %d bytes sent", resp.StatusCode, len(body), resp.ContentLength, len(blob))
	}
	if resp.Header.Get("Docker-Content-Digest") == "" || resp.Header.Get("Www-Authenticate") != "" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("headers: %v", resp.Header)
	}
	if a := <-gotAuth; a != "" {
		t.Errorf("the upstream received Authorization %q", a)
	}
}

// TestHTTPSUpstreamStreams: what the upstream has sent reaches the client
// while the upstream is still sending: the proxy does not wait for the
// whole body. The upstream writes its second part only after the client
// has read the first, so a proxy that buffers deadlocks and fails.
func TestHTTPSUpstreamStreams(t *testing.T) {
	clientRead := make(chan struct{})
	pxURL, tok := tlsProxy(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first part\n") // chunked: no Content-Length
		w.(http.Flusher).Flush()
		select {
		case <-clientRead:
		case <-time.After(10 * time.Second):
			return // the proxy held the first part back; the client fails below
		}
		_, _ = io.WriteString(w, "second part\n")
	})
	resp := get(t, pxURL+blobPath, tok)
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first part\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(clientRead)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second part\n" {
		t.Errorf("rest %q, %v", rest, err)
	}
}

// TestHTTPSUpstreamBrokenBodyAborts: a body that breaks mid-stream reaches
// the client as an error, never as a clean end, with and without a
// Content-Length.
func TestHTTPSUpstreamBrokenBodyAborts(t *testing.T) {
	for _, chunked := range []bool{false, true} {
		t.Run("chunked="+strconv.FormatBool(chunked), func(t *testing.T) {
			pxURL, tok := tlsProxy(t, func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", "1048576")
				}
				_, _ = w.Write(make([]byte, 100<<10))
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			})
			resp := get(t, pxURL+blobPath, tok)
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil {
				t.Errorf("client read %d bytes and a clean end of a broken body", n)
			} else if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("client error: %v", err)
			}
		})
	}
}
