package kubee2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"

	"github.com/qci-appci/qci-appci/test/kubecluster"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

// issuerB is the second cluster's service account issuer; the shared
// cluster (A) keeps kubecluster.Issuer.
const issuerB = "https://b.kube.example"

// apiFront is a TLS reverse proxy in front of one API server that counts
// what reached it: every TokenReview (with its token), every
// SubjectAccessReview and every issuer discovery.
type apiFront struct {
	srv *httptest.Server

	mu            sync.Mutex
	reviewed      []string // tokens of TokenReviews, in order
	accessReviews int
	discoveries   int
}

func startFront(t *testing.T, c *kubecluster.Cluster) *apiFront {
	t.Helper()
	f := &apiFront{}
	target, err := url.Parse(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.CAData())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig.RootCAs = pool
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport: tr,
	}
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		switch r.URL.Path {
		case "/apis/authentication.k8s.io/v1/tokenreviews":
			var review struct {
				Spec struct {
					Token string `json:"token"`
				} `json:"spec"`
			}
			_ = json.Unmarshal(body, &review)
			f.reviewed = append(f.reviewed, review.Spec.Token)
		case "/apis/authorization.k8s.io/v1/subjectaccessreviews":
			f.accessReviews++
		case "/.well-known/openid-configuration":
			f.discoveries++
		}
		f.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// counts are the TokenReviews, SubjectAccessReviews and discoveries so far.
func (f *apiFront) counts() (int, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reviewed), f.accessReviews, f.discoveries
}

func (f *apiFront) saw(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.reviewed, token)
}

// kubeconfig writes a kubeconfig that reaches the API server through f
// with token.
func (f *apiFront) kubeconfig(t *testing.T, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: f.srv.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: f.srv.Certificate().Raw})}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// applyManifests creates the objects of a multi-document YAML file, as
// they are.
func applyManifests(t *testing.T, ctx context.Context, cs kubernetes.Interface, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		strict := func(v any) {
			if err := yaml.UnmarshalStrict(doc, v); err != nil {
				t.Fatalf("%s: %s: %v", path, meta.Kind, err)
			}
		}
		switch meta.Kind {
		case "Namespace":
			var o corev1.Namespace
			strict(&o)
			noErr(t, created(cs.CoreV1().Namespaces().Create(ctx, &o, metav1.CreateOptions{})))
		case "ServiceAccount":
			var o corev1.ServiceAccount
			strict(&o)
			noErr(t, created(cs.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})))
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			strict(&o)
			noErr(t, created(cs.RbacV1().ClusterRoleBindings().Create(ctx, &o, metav1.CreateOptions{})))
		case "Role":
			var o rbacv1.Role
			strict(&o)
			noErr(t, created(cs.RbacV1().Roles(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})))
		case "RoleBinding":
			var o rbacv1.RoleBinding
			strict(&o)
			noErr(t, created(cs.RbacV1().RoleBindings(o.Namespace).Create(ctx, &o, metav1.CreateOptions{})))
		default:
			t.Fatalf("%s: kind %q not handled", path, meta.Kind)
		}
	}
}

// startWithEnv runs an upstream and the real binary with env as its
// whole cluster configuration.
func startWithEnv(t *testing.T, ctx context.Context, env map[string]string) *setup {
	t.Helper()
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	if _, err := reg.PushRandomImage(ctx, tag, 2, 64<<10); err != nil {
		t.Fatal(err)
	}
	full := map[string]string{
		"QCI_UPSTREAM_URL": reg.URL(), "QCI_ROBOT_USERNAME": robotUser, "QCI_ROBOT_PASSWORD": robotPass,
		"QCI_SIGNING_KEY": "kube-e2e-signing-key-0123456789abcdef0123", "QCI_REVIEW_CACHE_TTL": "1s",
	}
	for k, v := range env {
		full[k] = v
	}
	return &setup{reg: reg, proxy: proxyproc.Start(t, binary, full)}
}

// forgeToken signs, with the key in keyFile, a token shaped like a service
// account token of namespace/name on the cluster of iss.
func forgeToken(t *testing.T, keyFile, iss, namespace, name, uid string) string {
	t.Helper()
	b, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"iss": iss, "sub": "system:serviceaccount:" + namespace + ":" + name, "aud": []string{exposed},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{"namespace": namespace, "serviceaccount": map[string]any{"name": name, "uid": uid}},
	}).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestTwoClusters runs a second API server (B: its own etcd, signing key
// and issuer) beside the shared one (A), the function with a clusters file
// naming both through counting fronts, and shows that each token is
// reviewed by its own cluster only.
func TestTwoClusters(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	clusterB, err := kubecluster.Start(ctx, t.TempDir(), kubecluster.Options{Issuer: issuerB})
	if err != nil {
		t.Fatalf("cluster B: %v", err)
	}
	t.Cleanup(clusterB.Stop)
	if clusterB.ServiceAccountIssuer() == cluster.ServiceAccountIssuer() {
		t.Fatal("the two clusters share an issuer")
	}
	csB, err := clusterB.Clientset()
	if err != nil {
		t.Fatal(err)
	}

	// A: the deploy's RBAC and its users; B: the build farm's RBAC as
	// shipped, and two service accounts of ci (which it lets pull).
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	applyManifests(t, ctx, csB, "../../knative/examples/build-farm/rbac.yaml")
	noErr(t, created(csB.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ci"}}, metav1.CreateOptions{})))
	var builderUID string
	for _, name := range []string{"builder", "second"} {
		sa, err := csB.CoreV1().ServiceAccounts("ci").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		noErr(t, err)
		if name == "builder" {
			builderUID = string(sa.UID)
		}
	}

	frontA, frontB := startFront(t, cluster), startFront(t, clusterB)
	reviewerA, err := cluster.ServiceAccountToken(ctx, "qci", "qci-appci", nil, time.Hour)
	noErr(t, err)
	reviewerB, err := clusterB.ServiceAccountToken(ctx, "qci", "qci-appci-reviewer", nil, time.Hour)
	noErr(t, err)
	clustersFile := filepath.Join(t.TempDir(), "clusters.yaml")
	noErr(t, os.WriteFile(clustersFile, []byte(`clusters:
- name: app-ci
  kubeconfig: `+frontA.kubeconfig(t, reviewerA)+`
  opaqueTokens: true
  issuers: [`+cluster.ServiceAccountIssuer()+`]
  authorization: {namespace: ocp}
- name: build01
  kubeconfig: `+frontB.kubeconfig(t, reviewerB)+`
  audiences: [`+exposed+`]
  authorization: {namespace: qci-appci-pull}
`), 0o600))
	s := startWithEnv(t, ctx, map[string]string{"QCI_CLUSTERS_FILE": clustersFile})

	want := func(what string, front *apiFront, tokenReviews, accessReviews, discoveries int) {
		t.Helper()
		tr, sar, disc := front.counts()
		if tr != tokenReviews || sar != accessReviews || disc != discoveries {
			t.Errorf("%s: %d TokenReviews, %d SubjectAccessReviews, %d discoveries; want %d, %d, %d",
				what, tr, sar, disc, tokenReviews, accessReviews, discoveries)
		}
	}

	// A's service account (default audience) and A's opaque static-token
	// user: reviewed by A, B sees nothing, not even a discovery.
	puller, err := cluster.ServiceAccountToken(ctx, "ci", "puller", nil, time.Hour)
	noErr(t, err)
	if code, _ := s.login(t, "puller", puller); code != 200 {
		t.Fatalf("A's service account: %d\n%s", code, s.proxy.Logs())
	}
	if code, _ := s.login(t, groupedUser, groupedToken); code != 200 {
		t.Fatalf("A's opaque token: %d", code)
	}
	want("A after A's logins", frontA, 2, 2, 0)
	want("B after A's logins", frontB, 0, 0, 0)

	// B's service account, bound to the function's audience: B's issuer is
	// discovered once, then B reviews it; A sees nothing.
	builder, err := clusterB.ServiceAccountToken(ctx, "ci", "builder", []string{exposed}, time.Hour)
	noErr(t, err)
	if code, _ := s.login(t, "builder", builder); code != 200 {
		t.Fatalf("B's service account: %d\n%s", code, s.proxy.Logs())
	}
	want("A after B's login", frontA, 2, 2, 0)
	want("B after B's login", frontB, 1, 1, 1)
	podmanPull(t, ctx, s, "puller", puller, true)
	podmanPull(t, ctx, s, "builder", builder, true)

	// The build farm flow: B's kubelet hands the credential provider a
	// pod's token; its answer pulls, reviewed by B.
	_, _, kreq := kubeletRequest(t, ctx, csB, "builder", s.proxy.Host+"/"+repo+":"+tag)
	out, errOut, err := runProvider(t, ctx, buildProvider(t, ctx), s.proxy.Host, kreq)
	if err != nil {
		t.Fatalf("credential provider: %v\n%s", err, errOut)
	}
	var kresp credentialproviderv1.CredentialProviderResponse
	noErr(t, json.Unmarshal(out, &kresp))
	podmanPull(t, ctx, s, kresp.Auth[s.proxy.Host].Username, kresp.Auth[s.proxy.Host].Password, true)
	want("A after the pod's pull", frontA, 2, 2, 0)
	want("B after the pod's pull", frontB, 2, 2, 1)

	// B's token bound to B's own API server audience: B refuses it (401).
	plainB, err := clusterB.ServiceAccountToken(ctx, "ci", "second", nil, time.Hour)
	noErr(t, err)
	if code, _ := s.login(t, "second", plainB); code != http.StatusUnauthorized {
		t.Errorf("B's token without the function's audience: %d, want 401", code)
	}
	// A token naming B's issuer, signed with A's key: routed to B, refused
	// by B's TokenReview; A never sees it.
	forged := forgeToken(t, cluster.SigningKeyFile(), issuerB, "ci", "builder", builderUID)
	if code, _ := s.login(t, "builder", forged); code != http.StatusUnauthorized {
		t.Errorf("forged token naming B, signed by A: %d, want 401", code)
	}
	if !frontB.saw(forged) || frontA.saw(forged) {
		t.Errorf("the forged token went to B: %v, to A: %v; want B only", frontB.saw(forged), frontA.saw(forged))
	}
	// A token of a third issuer: no review anywhere.
	third := forgeToken(t, cluster.SigningKeyFile(), "https://c.kube.example", "ci", "puller", "x")
	if code, _ := s.login(t, "puller", third); code != http.StatusUnauthorized {
		t.Errorf("a token of no cluster: %d, want 401", code)
	}
	want("A before B goes down", frontA, 2, 2, 0)
	want("B before B goes down", frontB, 4, 2, 1)
	for _, tok := range []string{puller, groupedToken} {
		if frontB.saw(tok) {
			t.Error("a token of A was sent to B")
		}
	}
	for _, tok := range []string{builder, plainB} {
		if frontA.saw(tok) {
			t.Error("a token of B was sent to A")
		}
	}

	// B down: B's users get 503 (their cached answer lasts 1 s), A's users
	// keep logging in and pulling.
	if err := clusterB.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "B's users get 503 with B down", func() bool {
		code, h := s.login(t, "builder", builder)
		return code == http.StatusServiceUnavailable && h.Get("Retry-After") != ""
	})
	trA, _, _ := frontA.counts()
	eventually(t, "A reviews A's users afresh with B down", func() bool {
		code, _ := s.login(t, "puller", puller)
		n, _, _ := frontA.counts()
		return code == 200 && n > trA
	})
	podmanPull(t, ctx, s, "puller", puller, true)
	// The access lines of B's user's pulls name B (from our access token).
	var pulls int
	for _, line := range strings.Split(s.proxy.Logs(), "\n") {
		var l struct {
			HTTPRequest   struct{ RequestURL string } `json:"httpRequest"`
			User, Cluster string
		}
		if json.Unmarshal([]byte(line), &l) != nil || !strings.Contains(l.HTTPRequest.RequestURL, "/manifests/") {
			continue
		}
		want := map[string]string{"system:serviceaccount:ci:builder": "build01", "system:serviceaccount:ci:puller": "app-ci"}[l.User]
		if l.Cluster != want {
			t.Errorf("access line %s names cluster %q, want %q", line, l.Cluster, want)
		}
		if l.User == "system:serviceaccount:ci:builder" {
			pulls++
		}
	}
	if pulls == 0 {
		t.Errorf("no access line of B's user's pull:\n%s", s.proxy.Logs())
	}
}
