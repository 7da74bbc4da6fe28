// Package proxyproc builds and runs the real cmd/qci-appci binary as a
// separate process for end-to-end tests: on a free loopback port, with the
// environment a test gives, its logs kept, stopped with SIGTERM.
package proxyproc

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/logbuffer"
)

// Build builds cmd/qci-appci into dir and returns the binary's path.
func Build(dir string) (string, error) {
	bin := filepath.Join(dir, "qci-appci")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/qci-appci/qci-appci/cmd/qci-appci").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building cmd/qci-appci: %w\n%s", err, out)
	}
	return bin, nil
}

// Process is a running cmd/qci-appci.
type Process struct {
	cmd    *exec.Cmd
	Host   string // localhost:PORT
	URL    string // http://localhost:PORT
	logs   *logbuffer.Buffer
	exited chan error
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start runs bin with env (and PATH, PORT, QCI_METRICS_PORT=0 unless env
// sets it) and waits for /healthz; the
// process is killed at the end of the test, its logs shown if it failed.
func Start(t testing.TB, bin string, env map[string]string) *Process {
	t.Helper()
	port := FreePort(t)
	p := &Process{Host: "localhost:" + strconv.Itoa(port), logs: &logbuffer.Buffer{}, exited: make(chan error, 1)}
	p.URL = "http://" + p.Host
	cmd := exec.Command(bin)
	// Metrics off unless env asks: many instances run at once, and the
	// default metrics port (9090) is one port.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(port), "QCI_METRICS_PORT=0"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		err := <-p.exited
		p.exited <- err
		if t.Failed() {
			t.Logf("qci-appci logs:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.exited:
			t.Fatalf("qci-appci exited: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("qci-appci not ready: %v\n%s", err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns what the process has logged so far.
func (p *Process) Logs() string { return p.logs.String() }

// Terminate sends SIGTERM and returns the exit error (nil: exit 0).
func (p *Process) Terminate(t testing.TB) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err // for Cleanup
		return err
	case <-time.After(40 * time.Second):
		t.Fatal("qci-appci did not exit after SIGTERM")
		return nil
	}
}

// OpenFDs counts the process's open file descriptors.
func (p *Process) OpenFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}
