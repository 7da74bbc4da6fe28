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

// Serve serves h on ln over HTTP/1.1 and h2c until ctx is done, then stops
// accepting and lets in-flight requests finish for up to DrainTimeout.
// There is no write timeout: a large blob may stream for minutes.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	// HTTP/1.1 and HTTP/2 with prior knowledge (h2c): Cloud Run lifts its
	// 32 MiB HTTP/1 request limit only over h2c.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", DrainTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}
