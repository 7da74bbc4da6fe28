package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DrainTimeout is how long in-flight requests may finish after SIGTERM;
// Knative's and Cloud Run's default grace period is longer.
const DrainTimeout = 25 * time.Second

// Timeouts bound how long a client may take to send a request. None bounds
// a response: a large blob may stream for minutes.
type Timeouts struct {
	// Header bounds a request's head: an HTTP/1.1 request line and header,
	// an HTTP/2 header block (HEADERS and its CONTINUATION frames).
	Header time.Duration
	// Body bounds a request body, from when the handler starts to its end.
	Body time.Duration
	// Idle is how long a connection with no request in flight stays open.
	Idle time.Duration
}

// DefaultTimeouts are the timeouts Serve uses unless told otherwise.
func DefaultTimeouts() Timeouts {
	return Timeouts{Header: 10 * time.Second, Body: 10 * time.Second, Idle: 2 * time.Minute}
}

// Option changes how Serve serves.
type Option func(*Timeouts)

// WithTimeouts replaces DefaultTimeouts.
func WithTimeouts(t Timeouts) Option { return func(d *Timeouts) { *d = t } }

// Serve serves h on ln over HTTP/1.1 and h2c until ctx is done, then stops
// accepting and lets in-flight requests finish for up to DrainTimeout.
// There is no write timeout: a large blob may stream for minutes.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger, opts ...Option) error {
	t := DefaultTimeouts()
	for _, o := range opts {
		o(&t)
	}
	// HTTP/1.1 and HTTP/2 with prior knowledge (h2c): Cloud Run lifts its
	// 32 MiB HTTP/1 request limit only over h2c.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:   bodyDeadline(h, t.Body),
		Protocols: &protocols,
		// ReadHeaderTimeout cuts an HTTP/1.1 head. HTTP/2 ignores it, and
		// net/http has no knob for a header block: the server reads
		// HEADERS and its CONTINUATION frames as one frame, with nothing
		// but the 2-minute IdleTimeout running. Its ping health check
		// bounds it instead: with no complete frame read for
		// SendPingTimeout, the server sends a PING and closes the
		// connection if no ACK comes within PingTimeout. A client in the
		// middle of a header block cannot answer (RFC 9113 §6.10: any
		// frame but CONTINUATION there is a connection error), so a header
		// block that stalls, or trickles in as slow CONTINUATIONs, is cut
		// within SendPingTimeout+PingTimeout = Header. A healthy client
		// answers the ping whenever it is idle; nothing bounds a response.
		ReadHeaderTimeout: t.Header,
		HTTP2:             &http.HTTP2Config{SendPingTimeout: t.Header / 2, PingTimeout: t.Header / 2},
		// No ReadTimeout: on HTTP/1.1 it stays armed while a response
		// streams, and the server's background read cancels the request
		// when it fires. bodyDeadline bounds bodies instead.
		IdleTimeout:    t.Idle,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if err := serveUntil(ctx, srv, ln, DrainTimeout, func() {
		log.Info("shutting down: draining in-flight requests", "timeout", DrainTimeout.String())
	}); err != nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// serveUntil serves srv on ln until ctx is done (calling stopping then),
// then shuts it down, letting requests in flight finish for up to drain.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, stopping func()) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stopping()
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// bodyDeadline gives a request that has a body (a /v2/auth POST) d to send
// all of it: a read past the deadline fails, on HTTP/1.1 and HTTP/2 alike
// (http.ResponseController.SetReadDeadline). Once the body is read to its
// end the deadline no longer applies, so it never cuts a slow handler or a
// long response: HTTP/2 has closed the body, and HTTP/1.1 lifts the
// connection's deadline when it starts its background read at the body's
// end. Requests without a body (every registry read) are left alone: on
// HTTP/1.1 that background read is already running then, and a deadline
// firing there would cancel the request.
func bodyDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		}
		h.ServeHTTP(w, r)
	})
}
