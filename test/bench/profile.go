package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// profile records the function process with Linux perf (frame-pointer call
// graphs of the unchanged binary, built with its symbols: nothing in the
// product is switched on for it) under three loads over h2c from the TLS
// upstream, one at a time, and writes perf's report of each to dir:
// blob.txt (1 client), manifest.txt (64 clients, by tag) and
// digest.txt (64 clients, by digest), and cold.txt: a fresh process from
// its exec to its first proxied manifest.
func (b *bench) profile(dir string) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return fmt.Errorf("-profile needs Linux perf (apt-get install linux-perf): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	pr := b.peers[qciH2C]
	loads := []struct {
		name string
		run  func() error
	}{
		{"blob", func() error {
			for range 4 {
				if _, err := blobMBps(pr, b.c, 1); err != nil {
					return err
				}
			}
			return nil
		}},
		{"manifest", func() error {
			_, _, err := manifestLoad(pr, manifests+blobTag, b.c.blobManifest, 64, 5*time.Second)
			return err
		}},
		{"digest", func() error {
			_, _, err := manifestLoad(pr, manifests+b.c.blobManifest, b.c.blobManifest, 64, 5*time.Second)
			return err
		}},
	}
	// Warm the instance (upstream token, connections) before recording.
	if _, _, err := manifestLoad(pr, manifests+blobTag, b.c.blobManifest, 8, 200*time.Millisecond); err != nil {
		return err
	}
	for _, l := range loads {
		data := filepath.Join(b.dir, l.name+".perf")
		rec := exec.Command(perf, "record", "-F", "1999", "-g", "-o", data, "-p", strconv.Itoa(b.fn.cmd.Process.Pid))
		rec.Stderr = os.Stderr
		if err := rec.Start(); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond) // perf attaches asynchronously; a profile missing its start is still one of the load
		err := l.run()
		_ = rec.Process.Signal(syscall.SIGINT)
		_ = rec.Wait()
		if err != nil {
			return fmt.Errorf("%s load: %w", l.name, err)
		}
		if err := report(perf, data, filepath.Join(dir, l.name+".txt")); err != nil {
			return err
		}
	}
	return b.profileColdStart(perf, dir)
}

// profileColdStart records a fresh process under perf from its exec to its
// first proxied manifest (the /v2/ ping, the upstream token, the TLS
// connection to the upstream) and writes cold.txt.
func (b *bench) profileColdStart(perf, dir string) error {
	data := filepath.Join(b.dir, "cold.perf")
	port := freePort()
	rec := exec.Command(perf, "record", "-F", "20000", "-g", "-o", data, "--", b.bin)
	rec.Env = funcEnv(port, b.upURL(b.up.tls), b.ca)
	logf, err := os.OpenFile(filepath.Join(b.dir, "qci-appci.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	rec.Stderr = logf
	if err := rec.Start(); err != nil {
		return err
	}
	host := "localhost:" + strconv.Itoa(port)
	pr := &peer{name: "cold qci-appci under perf", base: "http://" + host, client: &http.Client{Transport: newH2CTransport()}, token: pullToken(host), proto: 2}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = okGet(ctx, pr, "/v2/")
	if err == nil {
		err = okGet(ctx, pr, manifests+blobTag)
	}
	_ = rec.Process.Signal(syscall.SIGINT) // perf ends the process it started
	_ = rec.Wait()
	if err != nil {
		return fmt.Errorf("cold start under perf: %w", err)
	}
	return report(perf, data, filepath.Join(dir, "cold.txt"))
}

// report writes perf's report of data to out: self time by function, then
// time under each function.
func report(perf, data, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	rep := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "--fields", "overhead,sym",
		"-g", "none", "--percent-limit", "0.5")
	rep.Stdout, rep.Stderr = f, os.Stderr
	if err := rep.Run(); err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	// With children: time spent under each function, for what a whole
	// subsystem (TLS, the HTTP/2 server) costs.
	fmt.Fprintln(f, "\n# ---- inclusive (children) ----")
	rep = exec.Command(perf, "report", "-i", data, "--stdio", "--children", "--fields", "overhead_children,overhead,sym",
		"-g", "none", "--percent-limit", "3")
	rep.Stdout, rep.Stderr = f, os.Stderr
	if err := rep.Run(); err != nil {
		return fmt.Errorf("perf report: %w", err)
	}
	fmt.Println("wrote", out)
	return f.Close()
}
