// Command qci-appci is the container entrypoint of the qci-appci function:
// it serves the function on :$PORT over HTTP/1.1 and h2c with its own
// http.Server, writes JSON logs that Cloud Logging reads (one access line per
// request), and drains in-flight requests on SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// drainTimeout is how long in-flight requests may finish after SIGTERM;
// Knative's and Cloud Run's default grace period is longer.
const drainTimeout = 25 * time.Second

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println("qci-appci", version)
		return
	}
	log := NewLogger(os.Stderr)
	if err := run(log); err != nil {
		log.Error("qci-appci stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	cfg.Logger = log
	handler, err := function.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("qci-appci listening", "version", version, "addr", ln.Addr().String(), "config", cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	return Serve(ctx, ln, AccessLog(log, handler), log)
}

// Serve serves h on ln over HTTP/1.1 and h2c until ctx is done, then stops
// accepting and lets in-flight requests finish for up to drainTimeout.
// There is no write timeout: a large blob may stream for minutes.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	h2 := &http2.Server{IdleTimeout: 2 * time.Minute}
	srv := &http.Server{
		Handler:           h2c.NewHandler(h, h2),
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
	log.Info("shutting down: draining in-flight requests", "timeout", drainTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
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
