// Package e2e drives the real cmd/qci-appci binary, as a separate process,
// with the clients people use (skopeo, podman, go-containerregistry, a
// containerd-style OAuth2 client), in front of a real distribution registry
// with token auth and a cluster API stand-in, and checks what each client
// got and what the upstream saw.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

const (
	repo       = "openshift/ci"
	tag        = "ci_ci-operator_latest"
	indexTag   = "ci_multiarch_latest"
	robotUser  = "openshift+ci_robot"
	robotPass  = "robot-password-upstream"
	aliceToken = "sha256~alice-allowed-token"
	bobToken   = "sha256~bob-denied-token"
	signingKey = "e2e-signing-key-0123456789abcdef0123456789"
)

// binary is the cmd/qci-appci built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qci-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "qci-appci")
	build := exec.Command("go", "build", "-o", binary, "github.com/qci-appci/qci-appci/cmd/qci-appci")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building cmd/qci-appci:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// need returns the path of a client tool. A missing tool fails the test
// when CI=true and skips it elsewhere, naming the Debian package.
func need(t *testing.T, tool, pkg string) string {
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

// world is one upstream, one cluster and one proxy process.
type world struct {
	t       *testing.T
	reg     *registrytest.Registry
	cluster *clustertest.Server
	proxy   *proxyProcess
}

func newWorld(t *testing.T) *world {
	t.Helper()
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	cl, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cl.AddToken(aliceToken, clustertest.User{Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated"}})
	cl.AddToken(bobToken, clustertest.User{Name: "bob", UID: "uid-bob", Groups: []string{"system:authenticated"}})
	cl.Allow("alice")
	kc, err := cl.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, reg: reg, cluster: cl}
	w.proxy = startProxy(t, map[string]string{
		"QCI_UPSTREAM_URL":   reg.URL(),
		"QCI_ROBOT_USERNAME": robotUser,
		"QCI_ROBOT_PASSWORD": robotPass,
		"QCI_SIGNING_KEY":    signingKey,
		"QCI_KUBECONFIG":     kc,
	})
	return w
}

// proxyProcess is a running cmd/qci-appci.
type proxyProcess struct {
	cmd    *exec.Cmd
	host   string // localhost:PORT
	url    string
	logs   *syncBuffer
	exited chan error
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startProxy runs the binary with env on a free port and waits for /healthz.
func startProxy(t *testing.T, env map[string]string) *proxyProcess {
	t.Helper()
	port := freePort(t)
	p := &proxyProcess{host: "localhost:" + strconv.Itoa(port), logs: &syncBuffer{}, exited: make(chan error, 1)}
	p.url = "http://" + p.host
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(port)}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = p.logs
	cmd.Stdout = p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	go func() { p.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.exited
		if t.Failed() {
			t.Logf("proxy logs:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case err := <-p.exited:
			t.Fatalf("proxy exited: %v\n%s", err, p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy not ready: %v\n%s", err, p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// terminate sends SIGTERM and returns the exit error (nil: exit 0).
func (p *proxyProcess) terminate(t *testing.T) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.exited <- err // for Cleanup
		return err
	case <-time.After(40 * time.Second):
		t.Fatal("proxy did not exit after SIGTERM")
		return nil
	}
}

// openFDs counts the proxy process's open file descriptors.
func (p *proxyProcess) openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// run runs a client command with a deadline and returns its combined output.
func run(t *testing.T, ctx context.Context, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Stdin = nil
	err := cmd.Run()
	return out.String(), err
}

// assertUpstreamSawOnlyRobotTokens checks every request the upstream
// received: registry requests carry a Bearer token that none of the
// client's credentials are part of.
func (w *world) assertUpstreamSawOnlyRobotTokens(clientSecrets ...string) {
	w.t.Helper()
	secrets := append([]string{aliceToken, bobToken, signingKey}, clientSecrets...)
	n := 0
	for _, r := range w.reg.Requests() {
		auth := r.Header.Get("Authorization")
		for _, s := range secrets {
			if s != "" && strings.Contains(auth, s) {
				w.t.Errorf("upstream %s %s carried a client credential", r.Method, r.Path)
			}
		}
		if strings.HasPrefix(r.Path, "/v2/"+repo+"/") {
			n++
			if !strings.HasPrefix(auth, "Bearer ") {
				w.t.Errorf("upstream %s %s without the robot's token: %q", r.Method, r.Path, auth)
			}
		}
	}
	if n == 0 {
		w.t.Error("the upstream saw no registry request")
	}
}

// syncBuffer is a bytes.Buffer safe for a process's output and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
