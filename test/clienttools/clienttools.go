// Package clienttools finds and runs the registry clients of the
// end-to-end tests (skopeo, podman from Debian): a missing tool fails the
// test under CI=true and skips it elsewhere, naming the package to install.
package clienttools

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Need returns the path of tool, installed by the Debian package pkg.
func Need(t testing.TB, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("%s is not installed: apt-get install -y %s", tool, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Run runs a command and returns its combined output.
func Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// Podman is podman run as root with storage of its own in a short temp
// dir (podman refuses a runroot over 50 characters), vfs and file events,
// so that nothing of the host's is touched.
type Podman struct {
	bin, dir string
	// Authfile is where login writes and pull reads credentials.
	Authfile string
}

// NewPodman returns a Podman, or skips/fails the test as Need does.
func NewPodman(t testing.TB) *Podman {
	t.Helper()
	bin := Need(t, "podman", "podman")
	if os.Geteuid() != 0 {
		t.Skip("podman runs here as root with its own --root: run the tests as root")
	}
	dir, err := os.MkdirTemp("", "pm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	return &Podman{bin: bin, dir: dir, Authfile: filepath.Join(dir, "auth.json")}
}

// Run runs podman with its storage options and args.
func (p *Podman) Run(ctx context.Context, args ...string) (string, error) {
	base := []string{"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--storage-driver", "vfs", "--events-backend", "file",
		"--cgroup-manager", "cgroupfs"}
	return Run(ctx, p.bin, append(base, args...)...)
}
