package main

import (
	"fmt"
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
// digest.txt (64 clients, by digest).
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
		out := filepath.Join(dir, l.name+".txt")
		rep := exec.Command(perf, "report", "-i", data, "--stdio", "--no-children", "--fields", "overhead,sym",
			"-g", "none", "--percent-limit", "0.5")
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		rep.Stdout, rep.Stderr = f, os.Stderr
		if err := rep.Run(); err != nil {
			f.Close()
			return fmt.Errorf("perf report: %w", err)
		}
		// With children: time spent under each function, for what a
		// whole subsystem (TLS, the HTTP/2 server) costs.
		fmt.Fprintln(f, "\n# ---- inclusive (children) ----")
		rep = exec.Command(perf, "report", "-i", data, "--stdio", "--children", "--fields", "overhead_children,overhead,sym",
			"-g", "none", "--percent-limit", "3")
		rep.Stdout, rep.Stderr = f, os.Stderr
		err = rep.Run()
		f.Close()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		fmt.Println("wrote", out)
	}
	return nil
}
