// Command qci-appci is the container entrypoint of the qci-appci function:
// it serves the function on :$PORT over HTTP/1.1 and h2c with its own
// http.Server, writes JSON logs that Cloud Logging reads (one access line per
// request), and drains in-flight requests on SIGTERM.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/qci-appci/qci-appci/cmd/internal/server"
	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/metrics"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// usage is what -h prints: the one flag, and where the configuration is.
const usage = `Usage: qci-appci [-version]

qci-appci serves the registry front door on :$PORT (HTTP/1.1 and h2c) and
its Prometheus metrics on :$QCI_METRICS_PORT (9090; 0: off). It is
configured by environment variables, QCI_ROBOT_USERNAME, QCI_ROBOT_PASSWORD
and QCI_SIGNING_KEY required (each also as <NAME>_FILE, a mounted secret);
every variable, its default and meaning are in the configuration table of
README.md:
  https://github.com/qci-appci/qci-appci#configuration

Flags:
`

func main() {
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), usage)
		flag.PrintDefaults()
	}
	flag.Parse()
	if *showVersion {
		fmt.Println("qci-appci", version)
		return
	}
	log := server.NewLogger(os.Stderr)
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
	// The metrics port is bound before anything is served, so that a port
	// in use fails the start, not a later scrape.
	var reg *prometheus.Registry
	var metricsLn net.Listener
	if cfg.MetricsPort != 0 {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		cfg.Metrics = metrics.New(reg)
		metricsLn, err = net.Listen("tcp", ":"+strconv.Itoa(int(cfg.MetricsPort)))
		if err != nil {
			return fmt.Errorf("listen for metrics (QCI_METRICS_PORT): %w", err)
		}
	}
	handler, err := function.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(int(cfg.Port)))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("qci-appci listening", "version", version, "addr", ln.Addr().String(), "config", cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	access := server.NewAccessLog(os.Stderr, server.WithMetrics(cfg.Metrics))
	defer access.Close()
	if metricsLn != nil {
		log.Info("metrics listening", "addr", metricsLn.Addr().String(), "path", "/metrics")
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := server.ServeMetrics(mctx, metricsLn, reg, log); err != nil {
				log.Error("metrics server stopped; the registry is still served", "error", err)
			}
		}()
		defer func() { cancel(); <-done }()
	}
	return server.Serve(ctx, ln, access.Handler(handler), log)
}
