package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

const (
	repo        = "openshift/ci"
	robotUser   = "bench-robot"
	robotPass   = "bench-robot-password"
	signingKey  = "bench-signing-key-0123456789abcdef0123456789"
	upstreamTok = "static-upstream-token"
)

// funcProc is a running qci-appci.
type funcProc struct {
	cmd   *exec.Cmd
	port  int
	host  string // localhost:PORT
	token string // a pull token of ours for host
}

// funcEnv is the function's whole environment: its configuration and
// SSL_CERT_FILE naming the bench's CA, the way a deployment makes a private
// CA trusted (Go's crypto/x509 reads it on Linux).
func funcEnv(port int, upURL string, ca *benchCA) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(port), "QCI_UPSTREAM_URL=" + upURL,
		"QCI_ROBOT_USERNAME=" + robotUser, "QCI_ROBOT_PASSWORD=" + robotPass, "QCI_SIGNING_KEY=" + signingKey,
		"QCI_METRICS_PORT=0", "SSL_CERT_FILE=" + ca.CAFile}
}

// execFunc starts bin on a free port without waiting for it to listen,
// with extra appended to its environment.
func execFunc(bin, dir, upURL string, ca *benchCA, extra ...string) (*funcProc, error) {
	port := freePort()
	logf, err := os.OpenFile(filepath.Join(dir, "qci-appci.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(funcEnv(port, upURL, ca), extra...)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	host := "localhost:" + strconv.Itoa(port)
	return &funcProc{cmd: cmd, port: port, host: host, token: pullToken(host)}, nil
}

// startFunc starts bin and waits until it listens.
func startFunc(bin, dir, upURL string, ca *benchCA) (*funcProc, error) {
	p, err := execFunc(bin, dir, upURL, ca)
	if err != nil {
		return nil, err
	}
	if err := waitTCP("127.0.0.1:" + strconv.Itoa(p.port)); err != nil {
		p.stop()
		return nil, fmt.Errorf("qci-appci: %w", err)
	}
	return p, nil
}

func (p *funcProc) pids() []int { return []int{p.cmd.Process.Pid} }

func (p *funcProc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// pullToken signs an access token as the function would for host, so that
// the throughput rows measure the proxy path and no login.
func pullToken(host string) string {
	keys, err := token.NewKeys([][]byte{[]byte(signingKey)}, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	iss := &token.Issuer{Keys: keys, AccessTTL: time.Hour}
	t, err := iss.Access(host, token.Subject{Name: robotUser, Login: token.LoginRobot}, []registry.Scope{registry.PullScope(repo)}, time.Now())
	if err != nil {
		panic(err)
	}
	return t.Raw
}
