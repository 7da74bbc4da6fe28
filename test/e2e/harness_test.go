// Package e2e drives the real cmd/qci-appci binary, as a separate process,
// with the clients people use (skopeo, podman, go-containerregistry, a
// containerd-style OAuth2 client), in front of each of two upstreams — a
// real distribution registry with token auth over plain HTTP, and
// test/quaytest, which behaves as quay.io does (https with its own CA, its
// realm on its own host, paged tag lists, blob GETs redirected to a CDN on
// another host) — with a cluster API stand-in, and checks what each client
// got and what the upstream (and the CDN) saw. The Go clients run over
// HTTP/1.1 and over h2c, as Knative's queue-proxy speaks to the function;
// behind quay, skopeo and podman reach it through a TLS front that speaks
// h2c to it, as Cloud Run's does, and verify every certificate.
package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/quaytest"
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

// The two upstreams every client test runs against.
const (
	distribution = "distribution" // distribution/v3 over plain HTTP
	quay         = "quay"         // test/quaytest over https, blobs from its CDN
)

var (
	// binary is the cmd/qci-appci built once for the package.
	binary string
	// quayCA signs every quaytest server's certificates. This process
	// trusts it through SSL_CERT_FILE, as do skopeo and podman, which
	// inherit it: they reach quaytest only at its CDN, following a
	// redirect. The function gets SSL_CERT_FILE in its own environment.
	quayCA *quaytest.CA
)

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
	if quayCA, err = quaytest.NewCA(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Before anything in this process loads the system roots.
	if err := os.Setenv("SSL_CERT_FILE", quayCA.File()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// request is one request an upstream (or its CDN) received.
type request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Status                 int
}

// upstream is the registry behind the function.
type upstream interface {
	URL() string
	PushRandomImage(ctx context.Context, tag string, layers int, layerSize int64) (v1.Image, error)
	PushRandomIndex(ctx context.Context, tag string) (v1.ImageIndex, error)
	PushBlob(ctx context.Context, size int64) (v1.Hash, error)
	ResetRequests()
	Restart() error
	Stop() error
	Resume() error
	Close() error
	// requests is what the registry and its token endpoint received.
	requests() []request
	// tag points each of tags at the manifest tagged from.
	tag(ctx context.Context, from string, tags []string) error
}

type distributionUpstream struct{ *registrytest.Registry }

// PushBlob uploads in 8 MiB chunks: in one PATCH the inmemory driver takes
// minutes for 256 MiB (see registrytest.PushBlobInChunks).
func (d distributionUpstream) PushBlob(ctx context.Context, size int64) (v1.Hash, error) {
	return d.PushBlobInChunks(ctx, size, 8<<20)
}

func (d distributionUpstream) tag(ctx context.Context, from string, tags []string) error {
	src, err := name.ParseReference(d.Host()+"/"+repo+":"+from, name.Insecure)
	if err != nil {
		return err
	}
	auth := remote.WithAuth(&authn.Basic{Username: robotUser, Password: robotPass})
	desc, err := remote.Get(src, auth, remote.WithContext(ctx))
	if err != nil {
		return err
	}
	for _, t := range tags {
		if err := remote.Tag(src.Context().Tag(t), desc, auth, remote.WithContext(ctx)); err != nil {
			return err
		}
	}
	return nil
}

func (d distributionUpstream) requests() []request {
	var out []request
	for _, r := range d.Requests() {
		out = append(out, request{Method: r.Method, Path: r.Path, RawQuery: r.RawQuery, Header: r.Header, Status: r.Status})
	}
	return out
}

type quayUpstream struct{ *quaytest.Server }

func fromQuay(rs []quaytest.Request) []request {
	var out []request
	for _, r := range rs {
		out = append(out, request{Method: r.Method, Path: r.Path, RawQuery: r.RawQuery, Header: r.Header, Status: r.Status})
	}
	return out
}

func (q quayUpstream) requests() []request { return fromQuay(q.Requests()) }

func (q quayUpstream) tag(_ context.Context, from string, tags []string) error {
	d, ok := q.TagDigest(from)
	if !ok {
		return fmt.Errorf("no tag %s", from)
	}
	for _, t := range tags {
		if err := q.Tag(t, d); err != nil {
			return err
		}
	}
	return nil
}

// world is one upstream, one cluster and one proxy process.
type world struct {
	t       *testing.T
	kind    string
	up      upstream
	reg     *registrytest.Registry // the upstream when kind is distribution, else nil
	quay    *quaytest.Server       // the upstream when kind is quay, else nil
	cluster *clustertest.Server
	proxy   *proxyproc.Process
	front   *tlsFront // behind quay, the TLS front skopeo and podman use
}

// containersHost is where skopeo and podman reach the function: behind
// distribution the function itself over plain HTTP; behind quay the TLS
// front, so that they verify every certificate they meet — the front's
// with its CA from a cert dir, the CDN's with the quay CA, the one CA they
// get from SSL_CERT_FILE. (With --tls-verify=false, containers/image skips
// verification for the redirect to the CDN too.)
func (w *world) containersHost() string {
	if w.front != nil {
		return w.front.Host
	}
	return w.proxy.Host
}

// tlsArgs are skopeo's or podman's TLS flags (prefix "src-" for skopeo
// copy's source) for containersHost.
func (w *world) tlsArgs(prefix string) []string {
	if w.front != nil {
		return []string{"--" + prefix + "tls-verify=true", "--" + prefix + "cert-dir=" + w.front.CertDir}
	}
	return []string{"--" + prefix + "tls-verify=false"}
}

// eachUpstream runs fn as a subtest against each upstream, in a world of its own.
func eachUpstream(t *testing.T, fn func(t *testing.T, w *world)) {
	for _, kind := range []string{distribution, quay} {
		t.Run(kind, func(t *testing.T) { fn(t, newWorld(t, kind)) })
	}
}

// h2cTransport speaks HTTP/2 with prior knowledge over plain TCP, as
// Knative's queue-proxy and Cloud Run's front end do to a port named h2c,
// and HTTP/2 over TLS to an https host (the CDN a blob redirect names).
// The two are separate transports: one http.Transport doing both would
// pool its HTTP/2 connections by address alone and answer go-containerregistry's
// https ping of the function's plain port on its h2c connection.
func h2cTransport() *schemeTransport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &schemeTransport{plain: &http.Transport{Protocols: &p}, tls: &http.Transport{ForceAttemptHTTP2: true}}
}

// schemeTransport sends http:// requests over plain and https:// over tls.
type schemeTransport struct{ plain, tls *http.Transport }

func (s *schemeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		return s.plain.RoundTrip(req)
	}
	return s.tls.RoundTrip(req)
}

// CloseIdleConnections closes both transports' idle connections.
func (s *schemeTransport) CloseIdleConnections() {
	s.plain.CloseIdleConnections()
	s.tls.CloseIdleConnections()
}

// eachProtocol runs fn as a subtest with an HTTP/1.1 and with an h2c
// client of the function; the upstream's request log is cleared first.
func eachProtocol(t *testing.T, w *world, fn func(t *testing.T, c *http.Client)) {
	for _, proto := range []string{"http1", "h2c"} {
		t.Run(proto, func(t *testing.T) {
			var tr interface {
				http.RoundTripper
				CloseIdleConnections()
			} = &http.Transport{}
			if proto == "h2c" {
				tr = h2cTransport()
			}
			t.Cleanup(tr.CloseIdleConnections)
			w.up.ResetRequests()
			fn(t, &http.Client{Transport: tr})
		})
	}
}

func newWorld(t *testing.T, kind string) *world {
	t.Helper()
	return newWorldWith(t, kind, nil)
}

// newWorldWith is newWorld with more environment for the function,
// chosen once the upstream runs.
func newWorldWith(t *testing.T, kind string, extraEnv func(w *world) map[string]string) *world {
	t.Helper()
	w := &world{t: t, kind: kind}
	env := map[string]string{
		"QCI_ROBOT_USERNAME": robotUser,
		"QCI_ROBOT_PASSWORD": robotPass,
		"QCI_SIGNING_KEY":    signingKey,
	}
	switch kind {
	case distribution:
		reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
		if err != nil {
			t.Fatal(err)
		}
		w.up, w.reg = distributionUpstream{reg}, reg
	case quay:
		q, err := quaytest.Start(quaytest.Options{Repository: repo, Username: robotUser, Password: robotPass, CA: quayCA})
		if err != nil {
			t.Fatal(err)
		}
		w.up, w.quay = quayUpstream{q}, q
		env["SSL_CERT_FILE"] = quayCA.File() // as a deployment trusts a private CA
	default:
		t.Fatalf("no upstream %q", kind)
	}
	t.Cleanup(func() { _ = w.up.Close() })
	env["QCI_UPSTREAM_URL"] = w.up.URL()
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
	w.cluster = cl
	env["QCI_KUBECONFIG"] = kc
	if extraEnv != nil {
		for k, v := range extraEnv(w) {
			env[k] = v
		}
	}
	w.proxy = proxyproc.Start(t, binary, env)
	if kind == quay {
		// Clients name the function 127.0.0.1 here, so that its host and
		// the CDN's (localhost) differ by name, as a deployment's and
		// quay.io's CDN do: Go's client keeps Authorization on a redirect
		// to the same host name whatever the port.
		_, port, err := net.SplitHostPort(w.proxy.Host)
		if err != nil {
			t.Fatal(err)
		}
		w.proxy.Host = "127.0.0.1:" + port
		w.proxy.URL = "http://" + w.proxy.Host
		w.front = startTLSFront(t, w.proxy.URL)
	}
	return w
}

// assertUpstreamSawOnlyRobotTokens checks every request the upstream
// received: registry requests carry a Bearer token that none of the
// client's credentials are part of. Behind quay, the CDN saw no
// Authorization at all and no credential anywhere in its requests.
func (w *world) assertUpstreamSawOnlyRobotTokens(clientSecrets ...string) {
	w.t.Helper()
	secrets := append([]string{aliceToken, bobToken, signingKey}, clientSecrets...)
	n := 0
	for _, r := range w.up.requests() {
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
	if w.quay == nil {
		return
	}
	for _, r := range fromQuay(w.quay.CDNRequests()) {
		if a := r.Header.Get("Authorization"); a != "" {
			w.t.Errorf("the CDN got %s %s with Authorization %.12q…", r.Method, r.Path, a)
		}
		for _, s := range append(secrets, robotPass) {
			if s == "" {
				continue
			}
			for k, vs := range r.Header {
				if strings.Contains(strings.Join(vs, " "), s) {
					w.t.Errorf("the CDN got a credential in %s", k)
				}
			}
			if strings.Contains(r.RawQuery, s) || strings.Contains(r.Path, s) {
				w.t.Errorf("the CDN got a credential in its URL %s", r.Path)
			}
		}
	}
}

// assertCDNServed checks, behind quay, that the CDN answered at least n
// blob GETs (its pre-signed URLs followed by the client) and nothing else.
func (w *world) assertCDNServed(n int) {
	w.t.Helper()
	if w.quay == nil {
		return
	}
	ok := 0
	for _, r := range w.quay.CDNRequests() {
		switch r.Status {
		case http.StatusOK, http.StatusPartialContent:
			ok++
		default:
			w.t.Errorf("the CDN answered %s %s with %d", r.Method, r.Path, r.Status)
		}
	}
	if ok < n {
		w.t.Errorf("the CDN served %d blobs, want at least %d", ok, n)
	}
}
