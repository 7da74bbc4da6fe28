package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// spliceTransport carries plain-HTTP GETs and HEADs without a body on
// connections of its own, one goroutine a request and no hand-off between
// goroutines (http.Transport has a read and a write loop per connection),
// so that a blob's body can go from the upstream's socket to the client's
// inside the kernel (splice on Linux): the response body it returns
// implements io.WriterTo, and writing it to a net/http ResponseWriter ends
// in (*net.TCPConn).ReadFrom of a TCP source. Every other request, and
// every https upstream, goes to the fallback transport.
type spliceTransport struct {
	fallback http.RoundTripper
	// headerTimeout bounds the wait for an answer's head, as
	// http.Transport's ResponseHeaderTimeout does.
	headerTimeout time.Duration
	// proxy is the fallback's Proxy function, if any.
	proxy  func(*http.Request) (*url.URL, error)
	dialer *net.Dialer
	idle   chan *rawConn
	bufs   sync.Pool
}

var _ http.RoundTripper = (*spliceTransport)(nil)

// maxIdleRaw bounds the kept-alive connections of the splice path.
const maxIdleRaw = 64

// rawIdleTimeout is how long an idle connection is kept: below the
// keep-alive timeouts of common servers (nginx 75 s, many load balancers
// 60 s), so that a request rarely meets a connection the upstream closed.
const rawIdleTimeout = 45 * time.Second

// defaultHeaderTimeout bounds the wait for an answer's head when the
// fallback transport sets none.
const defaultHeaderTimeout = 2 * time.Minute

// copyBufferSize is the buffer of the copy when splice is not possible.
const copyBufferSize = 64 << 10

// NewSpliceTransport wraps fallback with the splice path for plain-HTTP
// GETs and HEADs.
// When fallback is an *http.Transport with a Proxy function, a request for
// which it names a proxy (HTTP_PROXY and NO_PROXY, for
// http.ProxyFromEnvironment) goes to the fallback too: the raw connections
// only go straight to the upstream.
func NewSpliceTransport(fallback http.RoundTripper) http.RoundTripper {
	t := &spliceTransport{
		fallback:      fallback,
		dialer:        &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second},
		idle:          make(chan *rawConn, maxIdleRaw),
		bufs:          sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }},
		headerTimeout: defaultHeaderTimeout,
	}
	if ht, ok := fallback.(*http.Transport); ok {
		t.proxy = ht.Proxy
		if ht.ResponseHeaderTimeout > 0 {
			t.headerTimeout = ht.ResponseHeaderTimeout
		}
	}
	return t
}

// viaProxy reports whether req must go through an HTTP proxy.
func (t *spliceTransport) viaProxy(req *http.Request) bool {
	if t.proxy == nil {
		return false
	}
	u, err := t.proxy(req)
	return u != nil || err != nil // an error is the fallback's to report
}

// rawConn is one HTTP/1.1 connection to the upstream.
type rawConn struct {
	conn *net.TCPConn
	br   *bufio.Reader
	bw   *bufio.Writer
	host string
	// idleSince is when the connection was last put back.
	idleSince time.Time
	// head is under br: it bounds what an answer's head may take.
	head headLimiter
}

// maxHeadBytes bounds an answer's head, as http.Transport's
// MaxResponseHeaderBytes does (a little less than its default).
const maxHeadBytes = 1 << 20

// errHeadTooLarge: the upstream's answer head went on past maxHeadBytes.
var errHeadTooLarge = errors.New("answer head larger than 1 MiB")

// headLimiter fails reads past a budget while on, so that an upstream
// that sends header lines without end cannot grow the proxy's memory.
type headLimiter struct {
	r    io.Reader
	on   bool
	left int64
}

func (l *headLimiter) Read(p []byte) (int, error) {
	if !l.on {
		return l.r.Read(p)
	}
	if l.left <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

func (t *spliceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || (req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		(req.Body != nil && req.Body != http.NoBody) || t.viaProxy(req) {
		return t.fallback.RoundTrip(req)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := t.get(req.Context(), addr, attempt > 0)
		if err != nil {
			return nil, err
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		_ = c.conn.Close()
		// A kept-alive connection the upstream closed meanwhile fails before
		// any answer: try once more, on a new connection (the other idle
		// ones may be just as stale). An upstream too slow to answer is not
		// asked again.
		if !reused || attempt > 0 || req.Context().Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
	}
}

// get returns an idle connection to addr, or dials one; fresh skips the
// idle ones.
func (t *spliceTransport) get(ctx context.Context, addr string, fresh bool) (*rawConn, bool, error) {
	for !fresh {
		select {
		case c := <-t.idle:
			if c.host == addr && time.Since(c.idleSince) < rawIdleTimeout {
				return c, true, nil
			}
			_ = c.conn.Close()
			continue
		default:
		}
		break
	}
	nc, err := t.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		_ = nc.Close()
		return nil, false, fmt.Errorf("dial %s: not a TCP connection", addr)
	}
	c := &rawConn{conn: tc, bw: bufio.NewWriterSize(tc, 4<<10), host: addr, head: headLimiter{r: tc}}
	c.br = bufio.NewReaderSize(&c.head, 4<<10)
	return c, false, nil
}

// put keeps c for reuse, or closes it when the pool is full.
func (t *spliceTransport) put(c *rawConn) {
	c.idleSince = time.Now()
	select {
	case t.idle <- c:
	default:
		_ = c.conn.Close()
	}
}

// exchange writes req on c and reads the answer's head. The connection is
// interrupted when the request's context ends, until the body is closed.
func (t *spliceTransport) exchange(c *rawConn, req *http.Request) (*http.Response, error) {
	stop := context.AfterFunc(req.Context(), func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	writeRequestHead(c.bw, req)
	if err := c.bw.Flush(); err != nil {
		stop()
		return nil, fmt.Errorf("write request: %w", err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(t.headerTimeout))
	c.head.on, c.head.left = true, maxHeadBytes
	resp, err := readFinalResponse(c.br, req)
	c.head.on = false
	_ = c.conn.SetReadDeadline(time.Time{})
	if req.Context().Err() != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0)) // the reset above may have undone stop's interruption
	}
	if err != nil {
		stop()
		return nil, err
	}
	body := &rawBody{t: t, c: c, stop: stop, keep: !resp.Close}
	switch {
	case resp.Body == http.NoBody: // HEAD, 204, 304, or an empty body
		body.Close()
	case resp.ContentLength > 0 && len(resp.TransferEncoding) == 0:
		body.remaining = resp.ContentLength
		resp.Body = body
	case resp.ContentLength == 0:
		body.Close()
		resp.Body = http.NoBody
	default: // chunked or until EOF: plain reads, and the connection is not reused
		body.keep = false
		resp.Body = &closeWith{ReadCloser: resp.Body, after: body.Close}
	}
	return resp, nil
}

// readFinalResponse reads the answer's head, skipping informational (1xx)
// answers as http.Transport does: left unread, the final answer would be
// read as the answer to the connection's next request.
func readFinalResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	for range 5 {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, fmt.Errorf("read response: %w", err)
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, fmt.Errorf("read response: the upstream switched protocols on a %s", req.Method)
		case resp.StatusCode >= 100 && resp.StatusCode < 200:
			continue
		}
		return resp, nil
	}
	return nil, errors.New("read response: more than 5 informational answers")
}

// rawBody is a Content-Length body read off a rawConn.
type rawBody struct {
	t         *spliceTransport
	c         *rawConn
	stop      func() bool
	remaining int64
	keep      bool
	closed    bool
	mu        sync.Mutex
}

var _ io.WriterTo = (*rawBody)(nil)

func (b *rawBody) Read(p []byte) (int, error) {
	if b.remaining <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.c.br.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF && b.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// WriteTo writes what is buffered, then hands the socket to w's ReadFrom
// (which splices when w is a net/http HTTP/1.1 ResponseWriter).
func (b *rawBody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	if n := b.c.br.Buffered(); n > 0 && b.remaining > 0 {
		head, _ := b.c.br.Peek(int(min(int64(n), b.remaining)))
		m, err := w.Write(head)
		_, _ = b.c.br.Discard(m)
		total += int64(m)
		b.remaining -= int64(m)
		if err != nil {
			return total, err
		}
	}
	if b.remaining <= 0 {
		return total, nil
	}
	src := &io.LimitedReader{R: b.c.conn, N: b.remaining}
	var n int64
	var err error
	if rf, ok := w.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		bp := b.t.bufs.Get().(*[]byte)
		n, err = io.CopyBuffer(struct{ io.Writer }{w}, src, *bp)
		b.t.bufs.Put(bp)
	}
	total += n
	b.remaining -= n
	if err == nil && b.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return total, err
}

// Close keeps the connection when the body was read to its end, else closes it.
func (b *rawBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	interrupted := !b.stop()
	if b.keep && !interrupted && b.remaining == 0 && b.c.br.Buffered() == 0 {
		b.t.put(b.c)
		return nil
	}
	return b.c.conn.Close()
}

// closeWith closes a body, then runs after.
type closeWith struct {
	io.ReadCloser
	after func() error
}

func (c *closeWith) Close() error {
	return errors.Join(c.ReadCloser.Close(), c.after())
}

// writeRequestHead writes the head of a bodiless request: what
// (*http.Request).Write would, without its allocations and sorting. A
// header value with a line break or NUL is left out (net/http's server
// never lets one through; this keeps it so), and so is an empty
// User-Agent, which stands for "none" as in net/http.
func writeRequestHead(w *bufio.Writer, req *http.Request) {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	_, _ = w.WriteString(req.Method)
	_ = w.WriteByte(' ')
	_, _ = w.WriteString(req.URL.RequestURI())
	_, _ = w.WriteString(" HTTP/1.1\r\nHost: ")
	_, _ = w.WriteString(host)
	_, _ = w.WriteString("\r\n")
	for k, vs := range req.Header {
		if k == "Host" || k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" || !validHeaderName(k) {
			continue
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") || (v == "" && k == "User-Agent") {
				continue
			}
			_, _ = w.WriteString(k)
			_, _ = w.WriteString(": ")
			_, _ = w.WriteString(v)
			_, _ = w.WriteString("\r\n")
		}
	}
	_, _ = w.WriteString("\r\n")
}

// validHeaderName reports whether k is an HTTP token (RFC 9110, 5.6.2).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}
