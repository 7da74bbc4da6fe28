// Package e2e drives the real cmd/qci-appci binary, as a separate process,
// with the clients people use (skopeo, podman, go-containerregistry, a
// containerd-style OAuth2 client), in front of a real distribution registry
// with token auth and a cluster API stand-in, and checks what each client
// got and what the upstream saw.
package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/proxyproc"
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
	if binary, err = proxyproc.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// world is one upstream, one cluster and one proxy process.
type world struct {
	t       *testing.T
	reg     *registrytest.Registry
	cluster *clustertest.Server
	proxy   *proxyproc.Process
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
	w.proxy = proxyproc.Start(t, binary, map[string]string{
		"QCI_UPSTREAM_URL":   reg.URL(),
		"QCI_ROBOT_USERNAME": robotUser,
		"QCI_ROBOT_PASSWORD": robotPass,
		"QCI_SIGNING_KEY":    signingKey,
		"QCI_KUBECONFIG":     kc,
	})
	return w
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
