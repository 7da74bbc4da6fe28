package server_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/qci-appci/qci-appci/cmd/internal/server"
)

// closedWithin is the generous bound in which the server must have closed
// a connection whose timeouts are a fraction of it; without the timeouts
// it stays open for the 2-minute idle timeout.
const closedWithin = 5 * time.Second

// serveWith serves h with timeouts on a loopback port until the test ends.
func serveWith(t *testing.T, h http.Handler, timeouts server.Timeouts) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- server.Serve(ctx, ln, h, server.NewLogger(io.Discard), server.WithTimeouts(timeouts))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// dial opens a raw connection, closed when the test ends (before the
// server stops, so that the drain does not wait for it).
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// h2c starts an HTTP/2 connection with prior knowledge: the preface and an
// empty SETTINGS frame. It never answers the server's PINGs.
func h2c(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return c, fr
}

// headerBlock encodes a request's header block; pad adds a header of that
// many bytes.
func headerBlock(method string, extra ...hpack.HeaderField) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: method}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: "registry.example"}, {Name: ":path", Value: "/v2/auth"},
	}, extra...) {
		_ = enc.WriteField(f)
	}
	return buf.Bytes()
}

// assertClosed reads c until the server closes it, and fails if that takes
// longer than closedWithin.
func assertClosed(t *testing.T, c net.Conn, fr *http2.Framer) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(closedWithin))
	var err error
	if fr != nil {
		for err == nil {
			_, err = fr.ReadFrame()
		}
	} else {
		_, err = io.Copy(io.Discard, c)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the server still holds the connection after %v", time.Since(start).Round(time.Millisecond))
	}
}

var short = server.Timeouts{Header: 200 * time.Millisecond, Body: 200 * time.Millisecond, Idle: 2 * time.Minute}

func ok(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }

// TestH2HeaderBlockThatNeverEnds: HEADERS without END_HEADERS and then
// nothing is cut like a stalled HTTP/1.1 head, not held for IdleTimeout.
func TestH2HeaderBlockThatNeverEnds(t *testing.T) {
	addr := serveWith(t, http.HandlerFunc(ok), short)
	c, fr := h2c(t, addr)
	block := headerBlock("GET")
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:len(block)/2], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, c, fr)
}

// TestH2SlowContinuations: a header block that trickles in, one byte of
// CONTINUATION at a time, is cut too.
func TestH2SlowContinuations(t *testing.T) {
	addr := serveWith(t, http.HandlerFunc(ok), short)
	c, fr := h2c(t, addr)
	block := headerBlock("GET", hpack.HeaderField{Name: "x-pad", Value: strings.Repeat("a", 4000)})
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:1], EndStream: true}); err != nil {
		t.Fatal(err)
	}
	// 4 KB at one byte each 20 ms would take 80 s.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 1; i < len(block); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if fr.WriteContinuation(1, i == len(block)-1, block[i:i+1]) != nil {
				return
			}
		}
	}()
	assertClosed(t, c, fr)
}

// TestH1HeadThatNeverEnds: the same Header timeout cuts an HTTP/1.1 head.
func TestH1HeadThatNeverEnds(t *testing.T) {
	addr := serveWith(t, http.HandlerFunc(ok), short)
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET /v2/ HTTP/1.1\r\nHost: registry.example\r\nX-Pad: "); err != nil {
		t.Fatal(err)
	}
	assertClosed(t, c, nil)
}

// readsBody answers 200 with the body's length, or 408 when reading it fails.
func readsBody(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestTimeout)
		return
	}
	fmt.Fprint(w, len(b))
}

// A body bounded, and no head timeout that could fire first.
var slowBody = server.Timeouts{Header: 10 * time.Second, Body: 200 * time.Millisecond, Idle: 2 * time.Minute}

// TestH1BodyMustArrive: a POST that sends 10 of the 100 bytes it announced
// gets the handler's answer to a failed read, not a handler blocked forever.
func TestH1BodyMustArrive(t *testing.T) {
	addr := serveWith(t, http.HandlerFunc(readsBody), slowBody)
	c := dial(t, addr)
	_ = c.SetDeadline(time.Now().Add(closedWithin))
	if _, err := io.WriteString(c, "POST /v2/auth HTTP/1.1\r\nHost: registry.example\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("status %d, want the handler's 408", resp.StatusCode)
	}
}

// TestH2BodyMustArrive: the same over h2c.
func TestH2BodyMustArrive(t *testing.T) {
	addr := serveWith(t, http.HandlerFunc(readsBody), slowBody)
	c, fr := h2c(t, addr)
	_ = c.SetDeadline(time.Now().Add(closedWithin))
	block := headerBlock("POST", hpack.HeaderField{Name: "content-length", Value: "100"})
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, false, []byte("grant_type")); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("no answer on stream 1: %v", err)
		}
		if h, ok := f.(*http2.MetaHeadersFrame); ok && h.StreamID == 1 {
			if got := h.PseudoValue("status"); got != "408" {
				t.Errorf("status %s, want the handler's 408", got)
			}
			return
		}
	}
}

// TestLongResponsesNotCut: with every timeout short, a response that
// streams for twice as long arrives whole, over HTTP/1.1 and h2c, after
// a POST body (whose deadline must be lifted once it is read) and after a
// GET; and an idle h2c connection, which answers the server's pings, stays
// usable past the timeouts.
func TestLongResponsesNotCut(t *testing.T) {
	const chunks = 8
	addr := serveWith(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		rc := http.NewResponseController(w)
		tick := time.NewTicker(short.Header / 4)
		defer tick.Stop()
		for i := range chunks {
			fmt.Fprintf(w, "chunk %d\n", i)
			_ = rc.Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}), short)
	var want strings.Builder
	for i := range chunks {
		fmt.Fprintf(&want, "chunk %d\n", i)
	}
	h1 := &http.Transport{}
	h2 := &http.Transport{Protocols: new(http.Protocols)}
	h2.Protocols.SetUnencryptedHTTP2(true)
	for name, tr := range map[string]*http.Transport{"HTTP/1.1": h1, "h2c": h2} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Cleanup(tr.CloseIdleConnections)
			for _, method := range []string{http.MethodPost, http.MethodGet} {
				if method == http.MethodGet {
					// Idle for longer than every timeout.
					time.Sleep(2 * (short.Header + short.Body))
				}
				var reused bool
				ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
				var body io.Reader
				if method == http.MethodPost {
					body = strings.NewReader("grant_type=password")
				}
				req, _ := http.NewRequestWithContext(ctx, method, "http://"+addr+"/v2/auth", body)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(got) != want.String() {
					t.Errorf("%s: %d %q %v, want all %d chunks", method, resp.StatusCode, got, err, chunks)
				}
				if method == http.MethodGet && !reused {
					t.Errorf("%s: the connection, idle since the last response, was closed", method)
				}
				if name == "h2c" && resp.ProtoMajor != 2 {
					t.Errorf("h2c: answered over %s", resp.Proto)
				}
			}
		})
	}
}
