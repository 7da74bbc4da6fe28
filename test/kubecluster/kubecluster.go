// Package kubecluster runs a real Kubernetes API server for tests: Debian's
// etcd and a kube-apiserver built from the k8s.io/kubernetes module
// (test/kubeapiserver/build.sh), on loopback ports in a temp dir, with RBAC,
// service account tokens (TokenRequest) and a static token file for users
// whose groups matter. It does not import testing.
package kubecluster

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// StaticUser is a user of the API server's static token file.
type StaticUser struct {
	Token, Name, UID string
	Groups           []string
}

// Options configure a Cluster.
type Options struct {
	// Users are added to the static token file beside the admin.
	Users []StaticUser
	// Issuer is the service account token issuer (iss, and the default
	// audience); empty means Issuer. Clusters that run side by side each
	// need their own, as real ones do.
	Issuer string
}

// Issuer is the service account token issuer (and default audience).
const Issuer = "https://kubernetes.default.svc"

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	dir        string
	issuer     string
	apiPort    int
	etcdURL    string
	adminToken string
	log        *os.File

	mu   sync.Mutex
	etcd *exec.Cmd
	// etcdExited receives etcd's Wait result.
	etcdExited chan error
	apiserver  *exec.Cmd
	ca         []byte
}

// BinaryPath finds the kube-apiserver: $QCI_KUBE_APISERVER, else the
// build.sh output under the repository's .cache/bin.
func BinaryPath() (string, error) {
	if p := os.Getenv("QCI_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	_, file, _, _ := callerFile()
	p := filepath.Join(filepath.Dir(file), "..", "..", ".cache", "bin", "kube-apiserver")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("kube-apiserver not built: run bash test/kubeapiserver/build.sh (or set QCI_KUBE_APISERVER): %w", err)
	}
	return p, nil
}

// EtcdPath finds Debian's etcd.
func EtcdPath() (string, error) {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd not installed: apt-get install -y etcd-server: %w", err)
	}
	return p, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts etcd and kube-apiserver under dir and waits for /readyz.
func Start(ctx context.Context, dir string, opts Options) (*Cluster, error) {
	etcdBin, err := EtcdPath()
	if err != nil {
		return nil, err
	}
	apiBin, err := BinaryPath()
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, issuer: opts.Issuer}
	if c.issuer == "" {
		c.issuer = Issuer
	}
	if c.log, err = os.Create(filepath.Join(dir, "cluster.log")); err != nil {
		return nil, err
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	c.adminToken = fmt.Sprintf("admin-%x", b)
	if err := c.writeFiles(opts); err != nil {
		return nil, err
	}
	if c.apiPort, err = freePort(); err != nil {
		return nil, err
	}
	// A port found free may be taken by another test process before etcd
	// binds it: then etcd exits, and it is started again on other ports.
	for attempt := 1; ; attempt++ {
		err := c.startEtcd(ctx, etcdBin)
		if err == nil {
			break
		}
		if attempt == 3 || ctx.Err() != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.StartAPIServer(ctx, apiBin); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// startEtcd starts etcd on free ports, logging to etcd.log, and waits
// until it answers /health.
func (c *Cluster) startEtcd(ctx context.Context, bin string) error {
	clientPort, err := freePort()
	if err != nil {
		return err
	}
	peerPort, err := freePort()
	if err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(c.dir, "etcd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	c.etcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	data := filepath.Join(c.dir, "etcd")
	if err := os.RemoveAll(data); err != nil {
		return err
	}
	cmd := exec.Command(bin, "--name", "default", "--data-dir", data,
		"--listen-client-urls", c.etcdURL, "--advertise-client-urls", c.etcdURL,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(what string) error {
		b, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("etcd %s; its log ends:\n%s", what, b[max(0, len(b)-2000):])
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.etcdURL+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				c.etcd, c.etcdExited = cmd, exited
				return nil
			}
		}
		select {
		case err := <-exited:
			return fail(fmt.Sprintf("exited: %v", err))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fail("not healthy after 30s")
		}
	}
}

func (c *Cluster) writeFiles(opts Options) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(c.dir, "sa.key"), pemKey, 0o600); err != nil {
		return err
	}
	lines := []string{c.adminToken + ",admin,admin-uid,\"system:masters\""}
	for _, u := range opts.Users {
		lines = append(lines, fmt.Sprintf("%s,%s,%s,\"%s\"", u.Token, u.Name, u.UID, strings.Join(u.Groups, ",")))
	}
	return os.WriteFile(filepath.Join(c.dir, "tokens.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// StartAPIServer starts the API server (again) on the same port and certs.
func (c *Cluster) StartAPIServer(ctx context.Context, bin ...string) error {
	apiBin := ""
	if len(bin) > 0 {
		apiBin = bin[0]
	} else {
		var err error
		if apiBin, err = BinaryPath(); err != nil {
			return err
		}
	}
	cmd := exec.Command(apiBin,
		"--etcd-servers", c.etcdURL,
		"--secure-port", strconv.Itoa(c.apiPort),
		"--bind-address", "127.0.0.1",
		"--advertise-address", "127.0.0.1",
		"--cert-dir", filepath.Join(c.dir, "certs"),
		"--service-account-issuer", c.issuer,
		"--service-account-key-file", filepath.Join(c.dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(c.dir, "sa.key"),
		"--token-auth-file", filepath.Join(c.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--endpoint-reconciler-type", "none",
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins", "ServiceAccount",
		"--v", "0")
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	c.mu.Lock()
	c.apiserver = cmd
	c.mu.Unlock()
	return c.waitReady(ctx, cmd)
}

func (c *Cluster) waitReady(ctx context.Context, cmd *exec.Cmd) error {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(90 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("kube-apiserver exited: %v (log: %s)", err, c.log.Name())
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after 90s (log: %s)", c.log.Name())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ca, err := os.ReadFile(filepath.Join(c.dir, "certs", "apiserver.crt"))
	if err != nil {
		return fmt.Errorf("kube-apiserver serving cert: %w", err)
	}
	c.mu.Lock()
	c.ca = ca
	c.mu.Unlock()
	go func() { <-exited }()
	return nil
}

// StopAPIServer stops only the API server (etcd keeps the data).
func (c *Cluster) StopAPIServer() error {
	c.mu.Lock()
	cmd := c.apiserver
	c.apiserver = nil
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return nil
	}
	_ = cmd.Process.Kill()
	// Wait until the port is free, so a restart can bind it.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(c.apiPort), 200*time.Millisecond)
		if err != nil {
			return nil
		}
		conn.Close()
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("kube-apiserver still listening after kill")
}

// Stop stops both.
func (c *Cluster) Stop() {
	_ = c.StopAPIServer()
	if c.etcd != nil {
		_ = c.etcd.Process.Kill()
		<-c.etcdExited
	}
	if c.log != nil {
		_ = c.log.Close()
	}
}

// ServiceAccountIssuer is the iss of the cluster's service account tokens.
func (c *Cluster) ServiceAccountIssuer() string { return c.issuer }

// SigningKeyFile is the PEM file of the key that signs the cluster's
// service account tokens (to forge tokens in tests).
func (c *Cluster) SigningKeyFile() string { return filepath.Join(c.dir, "sa.key") }

// URL is the API server's URL.
func (c *Cluster) URL() string { return "https://127.0.0.1:" + strconv.Itoa(c.apiPort) }

// CAData is the API server's self-signed serving certificate.
func (c *Cluster) CAData() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ca
}

// AdminConfig is a client config with the admin's token.
func (c *Cluster) AdminConfig() *rest.Config {
	return &rest.Config{Host: c.URL(), BearerToken: c.adminToken, TLSClientConfig: rest.TLSClientConfig{CAData: c.CAData()}}
}

// Clientset is an admin clientset.
func (c *Cluster) Clientset() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.AdminConfig())
}

// WriteKubeconfig writes a kubeconfig for the server with token.
func (c *Cluster) WriteKubeconfig(path, token string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kube"] = &clientcmdapi.Cluster{Server: c.URL(), CertificateAuthorityData: c.CAData()}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["kube"] = &clientcmdapi.Context{Cluster: "kube", AuthInfo: "user"}
	cfg.CurrentContext = "kube"
	return clientcmd.WriteToFile(*cfg, path)
}

// ServiceAccountToken mints a token for a service account (TokenRequest).
func (c *Cluster) ServiceAccountToken(ctx context.Context, namespace, name string, audiences []string, ttl time.Duration) (string, error) {
	cs, err := c.Clientset()
	if err != nil {
		return "", err
	}
	secs := int64(ttl / time.Second)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}
