// Command qci-demo is `make run`: the qci-appci function on :$PORT (default
// 8080, plain HTTP) in front of an in-process distribution registry with
// token auth that holds a small sample image, plus an in-process stand-in
// of the cluster API with one allowed and one denied demo token. It prints
// commands to paste and stops cleanly on Ctrl-C.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/qci-appci/qci-appci/cmd/internal/server"
	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

// Demo defaults, used when QCI_ROBOT_USERNAME/QCI_ROBOT_PASSWORD are unset.
const (
	demoRobotUser     = "openshift+demo"
	demoRobotPassword = "demo-robot-password"
	demoRepository    = "openshift/ci"
	demoTag           = "ci_ci-operator_latest"
	allowedToken      = "demo-allowed-cluster-token"
	deniedToken       = "demo-denied-cluster-token"
)

func main() {
	// JSON lines with Cloud Logging's keys, as cmd/qci-appci writes them.
	log := server.NewLogger(os.Stderr)
	if err := run(log); err != nil {
		log.Error("qci-demo stopped", "error", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	port := 8080
	if p := os.Getenv("PORT"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("PORT %q is not a number", p)
		}
		port = n
	}
	user, pass := envOr("QCI_ROBOT_USERNAME", demoRobotUser), envOr("QCI_ROBOT_PASSWORD", demoRobotPassword)

	reg, err := registrytest.Start(registrytest.Options{Repository: demoRepository, Username: user, Password: pass})
	if err != nil {
		return fmt.Errorf("start the demo upstream registry: %w", err)
	}
	defer reg.Close()
	pushCtx, cancel := context.WithTimeout(ctx, time.Minute)
	img, err := reg.PushRandomImage(pushCtx, demoTag, 3, 256<<10)
	cancel()
	if err != nil {
		return fmt.Errorf("push the sample image: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("sample image digest: %w", err)
	}

	cluster, err := clustertest.Start()
	if err != nil {
		return fmt.Errorf("start the demo cluster API: %w", err)
	}
	defer cluster.Close()
	cluster.AddToken(allowedToken, clustertest.User{Name: "alice", UID: "demo-uid-alice", Groups: []string{"system:authenticated"}})
	cluster.AddToken(deniedToken, clustertest.User{Name: "mallory", UID: "demo-uid-mallory", Groups: []string{"system:authenticated"}})
	cluster.Allow("alice")
	dir, err := os.MkdirTemp("", "qci-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig, err := cluster.WriteKubeconfig(dir)
	if err != nil {
		return fmt.Errorf("write the demo kubeconfig: %w", err)
	}

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	cfg := config.Defaults()
	cfg.Port = config.Port(port)
	cfg.UpstreamURL = reg.URL()
	cfg.UpstreamRepository = demoRepository
	cfg.RobotUsername, cfg.RobotPassword = config.Secret(user), config.Secret(pass)
	cfg.SigningKey = config.Secret(hex.EncodeToString(key))
	cfg.Kubeconfig = kubeconfig
	cfg.Logger = log
	handler, err := function.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return fmt.Errorf("listen on :%d (set PORT to use another port): %w", port, err)
	}
	printCommands(port, reg.URL(), user, pass, digest.String())
	access := server.NewAccessLog(os.Stderr)
	defer access.Close()
	return server.Serve(ctx, ln, access.Handler(handler), log)
}

// printCommands prints the banner: where the demo and its upstream are,
// and commands to paste.
func printCommands(port int, upstream, user, pass, digest string) {
	host := "localhost:" + strconv.Itoa(port)
	image := host + "/" + demoRepository + ":" + demoTag
	fmt.Printf(`
qci-appci demo on http://%[1]s
upstream registry: %[9]s (in-process, token auth), holding %[8]s:%[10]s (%[3]s)

Paste into another terminal (plain HTTP, hence --tls-verify=false):

  # the robot's credentials
  skopeo login --tls-verify=false -u '%[4]s' -p '%[5]s' %[1]s
  skopeo inspect --tls-verify=false docker://%[2]s
  skopeo copy --src-tls-verify=false docker://%[2]s dir:/tmp/qci-demo-image

  # a cluster token that may pull (any user name), and one that may not (403)
  podman login --tls-verify=false -u alice -p %[6]s %[1]s
  podman pull --tls-verify=false %[2]s
  podman login --tls-verify=false -u mallory -p %[7]s %[1]s

  # go-containerregistry
  crane auth login %[1]s -u '%[4]s' -p '%[5]s' --insecure && crane manifest --insecure %[2]s

  # by hand
  curl -si http://%[1]s/v2/
  curl -s -u '%[4]s:%[5]s' 'http://%[1]s/v2/auth?scope=repository:%[8]s:pull'

Ctrl-C stops it.

`, host, image, digest, user, pass, allowedToken, deniedToken, demoRepository, upstream, demoTag)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
