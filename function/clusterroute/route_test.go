package clusterroute_test

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/qci-appci/qci-appci/function/clusterconfig"
	"github.com/qci-appci/qci-appci/function/clusterroute"
	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/requestinfo"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/logbuffer"
)

const (
	issuerA = "https://a.clusters.example"
	issuerB = "https://b.clusters.example"
)

// fakeJWT is shaped like a service account token naming iss; clustertest
// knows tokens by their bytes, so the signature is never checked here.
func fakeJWT(iss, sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	claims, _ := json.Marshal(map[string]any{"iss": iss, "sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"RS256","kid":"k"}`)) + "." + enc(claims) + "." + enc([]byte("signature-of-"+sub))
}

type twoClusters struct {
	a, b   *clustertest.Server
	router *clusterroute.Router
	logs   *logbuffer.Buffer
	tokA   string // a service account of A
	tokB   string // a service account of B
	opaque string // a user token of A
}

func kubeconfig(t *testing.T, s *clustertest.Server) string {
	t.Helper()
	kc, err := s.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

func startCluster(t *testing.T) *clustertest.Server {
	t.Helper()
	s, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newTwo starts cluster A (issuer A, opaque tokens) and cluster B (issuer
// B), each with one user allowed to pull, and a router over both.
func newTwo(t *testing.T, edit func(tc *twoClusters, f *clusterconfig.File)) *twoClusters {
	t.Helper()
	tc := &twoClusters{a: startCluster(t), b: startCluster(t), logs: &logbuffer.Buffer{}}
	tc.tokA = fakeJWT(issuerA, "system:serviceaccount:ci:a-puller")
	tc.tokB = fakeJWT(issuerB, "system:serviceaccount:ci:b-puller")
	tc.opaque = "sha256~alice-of-a"
	tc.a.AddToken(tc.tokA, clustertest.User{Name: "system:serviceaccount:ci:a-puller", UID: "uid-a"})
	tc.a.AddToken(tc.opaque, clustertest.User{Name: "alice", UID: "uid-alice"})
	tc.b.AddToken(tc.tokB, clustertest.User{Name: "system:serviceaccount:ci:b-puller", UID: "uid-b"})
	tc.a.Allow("system:serviceaccount:ci:a-puller")
	tc.a.Allow("alice")
	tc.b.Allow("system:serviceaccount:ci:b-puller")
	f := &clusterconfig.File{Clusters: []clusterconfig.Cluster{
		{Name: "a", Kubeconfig: kubeconfig(t, tc.a), Issuers: []string{issuerA}, OpaqueTokens: true,
			Authorization: clusterconfig.Authorization{Namespace: "ocp"}},
		{Name: "b", Kubeconfig: kubeconfig(t, tc.b), Issuers: []string{issuerB},
			Authorization: clusterconfig.Authorization{Namespace: "ocp"}},
	}}
	if edit != nil {
		edit(tc, f)
	}
	tc.router = clusterroute.New(f, clusterroute.Options{CacheTTL: time.Minute,
		Logger: slog.New(slog.NewJSONHandler(tc.logs, nil))})
	return tc
}

// reviews is how many TokenReviews and SubjectAccessReviews s answered.
func reviews(s *clustertest.Server) int { return len(s.TokenReviews()) + len(s.SubjectAccessReviews()) }

func (tc *twoClusters) wantReviews(t *testing.T, a, b int) {
	t.Helper()
	if got := reviews(tc.a); got != a {
		t.Errorf("cluster A answered %d reviews, want %d", got, a)
	}
	if got := reviews(tc.b); got != b {
		t.Errorf("cluster B answered %d reviews, want %d", got, b)
	}
}

func TestEachTokenIsReviewedByItsOwnClusterOnly(t *testing.T) {
	tc := newTwo(t, nil)
	ctx := context.Background()
	id, err := tc.router.Login(ctx, tc.tokA)
	if err != nil || id.Name != "system:serviceaccount:ci:a-puller" || id.Cluster != "a" {
		t.Fatalf("A's token: %+v, %v", id, err)
	}
	tc.wantReviews(t, 2, 0) // TokenReview and SubjectAccessReview at A
	id, err = tc.router.Login(ctx, tc.tokB)
	if err != nil || id.Name != "system:serviceaccount:ci:b-puller" || id.Cluster != "b" {
		t.Fatalf("B's token: %+v, %v", id, err)
	}
	tc.wantReviews(t, 2, 2)
	for _, tr := range tc.b.TokenReviews() {
		if tr.Spec.Token == tc.tokA {
			t.Error("A's token reached B")
		}
	}
	// Each cluster caches its own answers.
	for _, tok := range []string{tc.tokA, tc.tokB} {
		if _, err := tc.router.Login(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	tc.wantReviews(t, 2, 2)
}

func TestOpaqueTokensGoOnlyToTheClusterThatAcceptsThem(t *testing.T) {
	tc := newTwo(t, nil)
	id, err := tc.router.Login(context.Background(), tc.opaque)
	if err != nil || id.Name != "alice" || id.Cluster != "a" {
		t.Fatalf("opaque token: %+v, %v", id, err)
	}
	tc.wantReviews(t, 2, 0)

	none := newTwo(t, func(_ *twoClusters, f *clusterconfig.File) { f.Clusters[0].OpaqueTokens = false })
	if _, err := none.router.Login(context.Background(), none.opaque); !errors.Is(err, login.ErrBadCredentials) {
		t.Errorf("opaque token without an opaque cluster: %v, want wrong credentials", err)
	}
	none.wantReviews(t, 0, 0)
}

func TestATokenOfNoClusterIsRefusedWithoutAReview(t *testing.T) {
	tc := newTwo(t, nil)
	enc := base64.RawURLEncoding.EncodeToString
	for name, tok := range map[string]string{
		"another issuer":        fakeJWT("https://c.clusters.example", "system:serviceaccount:ci:x"),
		"an issuer's prefix":    fakeJWT(strings.TrimSuffix(issuerA, ".example"), "x"),
		"no iss":                enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"sub":"x"}`)) + ".sig",
		"iss not a string":      enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"iss":["`+issuerA+`"]}`)) + ".sig",
		"payload not base64url": "a." + "***" + ".c",
		"payload not JSON":      "a." + enc([]byte(issuerA)) + ".c",
		"empty iss":             enc([]byte(`{}`)) + "." + enc([]byte(`{"iss":""}`)) + ".sig",
		"empty token, JWT-ish":  "..",
	} {
		if _, err := tc.router.Login(context.Background(), tok); !errors.Is(err, login.ErrBadCredentials) {
			t.Errorf("%s: %v, want wrong credentials", name, err)
		}
		if n := reviews(tc.a) + reviews(tc.b); n != 0 {
			t.Fatalf("%s: %d reviews", name, n)
		}
	}
	if !strings.Contains(tc.logs.String(), `"issuer":"https://c.clusters.example"`) {
		t.Errorf("the log does not say which issuer matched no cluster:\n%s", tc.logs)
	}
}

func TestOneClusterDownFailsOnlyItsOwnUsers(t *testing.T) {
	tc := newTwo(t, nil)
	tc.b.SetDown(true)
	if _, err := tc.router.Login(context.Background(), tc.tokB); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("B's user with B down: %v, want unavailable", err)
	}
	for _, tok := range []string{tc.tokA, tc.opaque} {
		if _, err := tc.router.Login(context.Background(), tok); err != nil {
			t.Errorf("A's user with B down: %v", err)
		}
	}
	tc.b.SetDown(false)
	if _, err := tc.router.Login(context.Background(), tc.tokB); err != nil {
		t.Errorf("B's user with B back: %v", err)
	}
}

func TestRefreshReauthorizesAtTheClusterItNames(t *testing.T) {
	tc := newTwo(t, nil)
	ctx, info := requestinfo.With(context.Background())
	err := tc.router.Authorize(ctx, login.Identity{Name: "system:serviceaccount:ci:b-puller", UID: "uid-b", Cluster: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if info.Cluster != "b" {
		t.Errorf("access line cluster %q, want b", info.Cluster)
	}
	tc.wantReviews(t, 0, 1)
	if sars := tc.b.SubjectAccessReviews(); sars[0].Spec.User != "system:serviceaccount:ci:b-puller" {
		t.Errorf("B reviewed %+v", sars[0].Spec)
	}
	tc.b.Revoke("system:serviceaccount:ci:b-puller")
	if err := tc.router.Authorize(ctx, login.Identity{Name: "system:serviceaccount:ci:b-puller", Cluster: "b"}); !errors.Is(err, login.ErrDenied) {
		t.Errorf("after revoke: %v, want denied", err)
	}
	for _, cluster := range []string{"", "c"} {
		if err := tc.router.Authorize(ctx, login.Identity{Name: "alice", Cluster: cluster}); !errors.Is(err, login.ErrBadCredentials) {
			t.Errorf("refresh naming cluster %q: %v, want wrong credentials", cluster, err)
		}
	}
	tc.wantReviews(t, 0, 2)
}

func TestLoginNamesTheClusterInTheAccessLine(t *testing.T) {
	tc := newTwo(t, nil)
	ctx, info := requestinfo.With(context.Background())
	tc.b.Deny("system:serviceaccount:ci:b-puller")
	if _, err := tc.router.Login(ctx, tc.tokB); !errors.Is(err, login.ErrDenied) {
		t.Fatalf("denied user: %v", err)
	}
	if info.Cluster != "b" {
		t.Errorf("cluster %q, want b", info.Cluster)
	}
}

func TestAllowListNeedsNoSubjectAccessReview(t *testing.T) {
	tc := newTwo(t, func(_ *twoClusters, f *clusterconfig.File) {
		f.Clusters[1].Authorization = clusterconfig.Authorization{Allow: &clusterconfig.Allow{Namespaces: []string{"ci"}}}
	})
	other := fakeJWT(issuerB, "system:serviceaccount:other:builder")
	tc.b.AddToken(other, clustertest.User{Name: "system:serviceaccount:other:builder"})
	tc.b.Allow("system:serviceaccount:other:builder") // RBAC would allow it: the list decides
	if _, err := tc.router.Login(context.Background(), tc.tokB); err != nil {
		t.Errorf("listed namespace: %v", err)
	}
	if _, err := tc.router.Login(context.Background(), other); !errors.Is(err, login.ErrDenied) {
		t.Errorf("unlisted namespace: %v, want denied", err)
	}
	if n := len(tc.b.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d SubjectAccessReviews with an allow list", n)
	}
	if n := len(tc.b.TokenReviews()); n != 2 {
		t.Errorf("%d TokenReviews, want 2: the list does not replace authentication", n)
	}
}

// TestAllowListRefreshIsDecidedWithoutAReviewSlot: re-authorizing a user
// of an allow-list cluster (a refresh) is decided in memory, so it is
// neither refused ErrBusy while every review slot of that cluster is held
// nor sent to the cluster; a user no longer on the list (a refresh token
// issued before the list changed) is still denied. A namespace-review
// cluster with every slot held refuses its refresh ErrBusy.
func TestAllowListRefreshIsDecidedWithoutAReviewSlot(t *testing.T) {
	tc := newTwo(t, func(_ *twoClusters, f *clusterconfig.File) {
		f.Clusters[1].Authorization = clusterconfig.Authorization{Allow: &clusterconfig.Allow{ServiceAccounts: []string{"ci/b-puller"}}}
	})
	ctx := context.Background()
	var held sync.WaitGroup
	var releases []func()
	for _, c := range []struct {
		s      *clustertest.Server
		issuer string
	}{{tc.a, issuerA}, {tc.b, issuerB}} {
		arrived, release := c.s.HoldReviews()
		t.Cleanup(release)
		for i := range login.DefaultMaxReviews {
			tok := fakeJWT(c.issuer, fmt.Sprintf("system:serviceaccount:ci:bogus-%d", i))
			held.Go(func() { _, _ = tc.router.Login(ctx, tok) })
		}
		releases = append(releases, release)
		for range login.DefaultMaxReviews {
			<-arrived
		}
	}
	if _, err := tc.router.Login(ctx, fakeJWT(issuerB, "system:serviceaccount:ci:one-more")); !errors.Is(err, login.ErrBusy) {
		t.Fatalf("a login with every slot of B held: %v, want ErrBusy", err)
	}
	if err := tc.router.Authorize(ctx, login.Identity{Name: "system:serviceaccount:ci:b-puller", UID: "uid-b", Cluster: "b"}); err != nil {
		t.Errorf("refresh of a listed service account with every slot held: %v", err)
	}
	if err := tc.router.Authorize(ctx, login.Identity{Name: "system:serviceaccount:ci:dropped", Cluster: "b"}); !errors.Is(err, login.ErrDenied) {
		t.Errorf("refresh of a service account no longer listed: %v, want ErrDenied", err)
	}
	if err := tc.router.Authorize(ctx, login.Identity{Name: "system:serviceaccount:ci:a-puller", UID: "uid-a", Cluster: "a"}); !errors.Is(err, login.ErrBusy) {
		t.Errorf("refresh needing a namespace review with every slot held: %v, want ErrBusy", err)
	}
	if n := len(tc.b.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d SubjectAccessReviews at the allow-list cluster", n)
	}
	for _, release := range releases {
		release()
	}
	held.Wait()
}

// discoveryFront is a TLS server in front of a stand-in cluster that also
// serves the API server's /.well-known/openid-configuration.
type discoveryFront struct {
	srv        *httptest.Server
	issuer     string
	asked      atomic.Int32
	failing    atomic.Bool
	kubeconfig string
}

func startDiscoveryFront(t *testing.T, behind *clustertest.Server, issuer string) *discoveryFront {
	t.Helper()
	d := &discoveryFront{issuer: issuer}
	target, _ := url.Parse(behind.URL())
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // the stand-in on loopback
	d.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			proxy.ServeHTTP(w, r)
			return
		}
		d.asked.Add(1)
		if r.Header.Get("Authorization") != "Bearer "+behind.CallerToken() {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		if d.failing.Load() {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"issuer":"`+d.issuer+`","jwks_uri":"`+d.issuer+`/openid/v1/jwks"}`)
	}))
	t.Cleanup(d.srv.Close)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: d.srv.URL,
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.srv.Certificate().Raw})}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: behind.CallerToken()}
	cfg.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "c"
	d.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, d.kubeconfig); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestIssuerDiscoveredOnFirstUse(t *testing.T) {
	var front *discoveryFront
	tc := newTwo(t, func(tc *twoClusters, f *clusterconfig.File) {
		front = startDiscoveryFront(t, tc.b, issuerB)
		f.Clusters[1].Kubeconfig = front.kubeconfig
		f.Clusters[1].Issuers = nil
	})
	b := tc.b

	// A's tokens need no discovery.
	if _, err := tc.router.Login(context.Background(), tc.tokA); err != nil {
		t.Fatal(err)
	}
	if n := front.asked.Load(); n != 0 {
		t.Errorf("discovery asked %d times for a token of a listed issuer", n)
	}
	front.failing.Store(true)
	if _, err := tc.router.Login(context.Background(), tc.tokB); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("B's token while B's issuer cannot be found: %v, want unavailable", err)
	}
	if _, err := tc.router.Login(context.Background(), tc.tokA); err != nil {
		t.Errorf("A's token while B's discovery fails: %v", err)
	}
	front.failing.Store(false)
	id, err := tc.router.Login(context.Background(), tc.tokB)
	if err != nil || id.Cluster != "b" {
		t.Fatalf("B's token once B's issuer is found: %+v, %v", id, err)
	}
	if n := len(b.TokenReviews()); n != 1 {
		t.Errorf("B answered %d TokenReviews, want 1", n)
	}
	asked := front.asked.Load()
	// Found once: later tokens of B, and tokens of nobody, ask no more.
	_, _ = tc.router.Login(context.Background(), fakeJWT(issuerB, "system:serviceaccount:ci:other"))
	if _, err := tc.router.Login(context.Background(), fakeJWT("https://c.clusters.example", "x")); !errors.Is(err, login.ErrBadCredentials) {
		t.Errorf("a token of nobody once every issuer is known: %v, want wrong credentials", err)
	}
	if n := front.asked.Load(); n != asked {
		t.Errorf("discovery asked %d more times after it succeeded", n-asked)
	}
	if n := reviews(tc.a); n != 2 {
		t.Errorf("A answered %d reviews, want 2 (its own token only)", n)
	}
}

func TestCachedAnswersNameTheClusterAndAskNobody(t *testing.T) {
	var front *discoveryFront
	tc := newTwo(t, func(tc *twoClusters, f *clusterconfig.File) {
		front = startDiscoveryFront(t, tc.b, issuerB)
		f.Clusters[1].Kubeconfig = front.kubeconfig
		f.Clusters[1].Issuers = nil
	})
	for _, tok := range []string{tc.tokA, tc.opaque, tc.tokB, fakeJWT("https://c.clusters.example", "x"), "a.b"} {
		if a, ok := tc.router.Cached(tok); ok {
			t.Errorf("a cached answer %+v before any login", a)
		}
	}
	if n := front.asked.Load(); n != 0 {
		t.Errorf("Cached asked for B's issuer %d times", n)
	}
	for _, tok := range []string{tc.tokA, tc.opaque, tc.tokB} {
		if _, err := tc.router.Login(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	for tok, cluster := range map[string]string{tc.tokA: "a", tc.opaque: "a", tc.tokB: "b"} {
		a, ok := tc.router.Cached(tok)
		if !ok || a.Err != nil || a.Identity.Cluster != cluster {
			t.Errorf("cached %+v, %v; want an identity of cluster %s", a, ok, cluster)
		}
	}
	tc.wantReviews(t, 4, 2)
}

// A discovered issuer that another cluster lists makes the token's cluster
// ambiguous: it goes to neither, and the log says to list the issuers.
func TestADiscoveredIssuerSharedWithAnotherClusterRoutesNowhere(t *testing.T) {
	var front *discoveryFront
	tc := newTwo(t, func(tc *twoClusters, f *clusterconfig.File) {
		front = startDiscoveryFront(t, tc.b, issuerA) // B claims A's issuer
		f.Clusters[1].Kubeconfig = front.kubeconfig
		f.Clusters[1].Issuers = nil
	})
	if _, err := tc.router.Login(context.Background(), tc.tokA); err != nil {
		t.Fatalf("A's token before B's issuer is known: %v", err)
	}
	// A token of an unknown issuer makes the router discover B's.
	if _, err := tc.router.Login(context.Background(), fakeJWT("https://c.clusters.example", "x")); !errors.Is(err, login.ErrBadCredentials) {
		t.Fatalf("unknown issuer: %v", err)
	}
	if front.asked.Load() != 1 {
		t.Fatalf("discovery asked %d times, want 1", front.asked.Load())
	}
	other := fakeJWT(issuerA, "system:serviceaccount:ci:other")
	if _, err := tc.router.Login(context.Background(), other); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("a token of the shared issuer: %v, want unavailable", err)
	}
	tc.wantReviews(t, 2, 0)
	if !strings.Contains(tc.logs.String(), "clusters share an issuer") {
		t.Errorf("the log does not say the clusters share an issuer:\n%s", tc.logs)
	}
}

// TestImageStreamReviewsGoToTheUsersOwnCluster: with both clusters in
// imageStreams mode, a login needs only a token the cluster authenticates
// (no SubjectAccessReview), and each image stream review for a user runs
// at the cluster that authenticated them, never at the other, including
// the namespace review of the upstream repository in the cluster's own
// namespace.
func TestImageStreamReviewsGoToTheUsersOwnCluster(t *testing.T) {
	tc := newTwo(t, func(_ *twoClusters, f *clusterconfig.File) {
		f.Clusters[0].Authorization = clusterconfig.Authorization{ImageStreams: true, Namespace: "ocp"}
		f.Clusters[1].Authorization = clusterconfig.Authorization{ImageStreams: true, Namespace: "ci-pull"}
	})
	if got, want := tc.router.ImageStreamClusters(), map[string]string{"a": "ocp", "b": "ci-pull"}; !maps.Equal(got, want) {
		t.Errorf("ImageStreamClusters() = %v, want %v", got, want)
	}
	ctx := context.Background()
	const puller = "system:serviceaccount:ci:b-puller"
	tc.b.Revoke(puller) // only AllowOn decides from here
	tc.b.AllowOn(puller, "ci", "ci-operator")
	idB, err := tc.router.Login(ctx, tc.tokB)
	if err != nil || idB.Cluster != "b" {
		t.Fatalf("B's token: %+v, %v", idB, err)
	}
	tc.wantReviews(t, 0, 1) // B's TokenReview only
	if err := tc.router.Review(ctx, idB, policy.Resource{Namespace: "ci", Name: "ci-operator"}); err != nil {
		t.Errorf("B's user on ci/ci-operator: %v", err)
	}
	var denied *login.DeniedError
	if err := tc.router.Review(ctx, idB, policy.Resource{Namespace: "ci", Name: "other"}); !errors.As(err, &denied) || denied.ImageStream != "other" {
		t.Errorf("B's user on ci/other: %v, want denied naming the image stream", err)
	}
	tc.wantReviews(t, 0, 3)
	sars := tc.b.SubjectAccessReviews()
	if ra := sars[0].Spec.ResourceAttributes; sars[0].Spec.User != puller || sars[0].Spec.UID != "uid-b" ||
		ra.Namespace != "ci" || ra.Name != "ci-operator" || ra.Resource != "imagestreams" || ra.Subresource != "layers" {
		t.Errorf("B reviewed %+v %+v", sars[0].Spec, ra)
	}
	// A's users are reviewed at A, B sees nothing more.
	idA, err := tc.router.Login(ctx, tc.tokA)
	if err != nil || idA.Cluster != "a" {
		t.Fatalf("A's token: %+v, %v", idA, err)
	}
	tc.a.AllowOn("system:serviceaccount:ci:a-puller", "ci", "ci-operator")
	if err := tc.router.Review(ctx, idA, policy.Resource{Namespace: "ci", Name: "ci-operator"}); err != nil {
		t.Errorf("A's user on ci/ci-operator: %v", err)
	}
	tc.wantReviews(t, 2, 3)
	// A refresh of B's user authorizes nothing at login: the scopes are
	// reviewed again, at B.
	if err := tc.router.Authorize(ctx, idB); err != nil {
		t.Errorf("refresh of B's user: %v", err)
	}
	tc.wantReviews(t, 2, 3)
	// The identity names the cluster: the same user named at A is
	// reviewed at A, so B's grant does not help.
	asA := idB
	asA.Cluster = "a"
	if err := tc.router.Review(ctx, asA, policy.Resource{Namespace: "ci", Name: "ci-operator"}); !errors.Is(err, login.ErrDenied) {
		t.Errorf("B's user named as A's: %v, want denied by A", err)
	}
	tc.wantReviews(t, 3, 3)
	// No cluster, or an unknown one: no review anywhere.
	for _, cluster := range []string{"", "c"} {
		id := idB
		id.Cluster = cluster
		if err := tc.router.Review(ctx, id, policy.Resource{Namespace: "ci", Name: "ci-operator"}); !errors.Is(err, login.ErrUnavailable) {
			t.Errorf("cluster %q: %v, want unavailable", cluster, err)
		}
	}
	tc.wantReviews(t, 3, 3)
	// The upstream repository's review: namespace-wide, in B's namespace.
	tc.b.AllowOn(puller, "ci-pull", "")
	if err := tc.router.Review(ctx, idB, policy.Resource{Namespace: "ci-pull"}); err != nil {
		t.Errorf("B's user in ci-pull: %v", err)
	}
	tc.wantReviews(t, 3, 4)
	// B down: its users' reviews are unavailable, A's still answered.
	tc.b.SetDown(true)
	if err := tc.router.Review(ctx, idB, policy.Resource{Namespace: "ci", Name: "ci-operator"}); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("B's user with B down: %v, want unavailable", err)
	}
	if err := tc.router.Review(ctx, idA, policy.Resource{Namespace: "ci", Name: "ci-operator"}); err != nil {
		t.Errorf("A's user with B down: %v", err)
	}
}

// TestLoginTimeClustersReviewNoImageStream: a cluster that authorizes at
// login (namespace review or allow list) is never asked per image stream,
// while the other cluster is.
func TestLoginTimeClustersReviewNoImageStream(t *testing.T) {
	tc := newTwo(t, func(_ *twoClusters, f *clusterconfig.File) {
		f.Clusters[1].Authorization = clusterconfig.Authorization{ImageStreams: true, Namespace: "ocp"}
	})
	if got, want := tc.router.ImageStreamClusters(), map[string]string{"b": "ocp"}; !maps.Equal(got, want) {
		t.Errorf("ImageStreamClusters() = %v, want %v", got, want)
	}
	ctx := context.Background()
	idA, err := tc.router.Login(ctx, tc.tokA)
	if err != nil {
		t.Fatal(err)
	}
	tc.wantReviews(t, 2, 0) // A still reviews its namespace at login
	if err := tc.router.Review(ctx, idA, policy.Resource{Namespace: "ci", Name: "ci-operator"}); !errors.Is(err, login.ErrUnavailable) {
		t.Errorf("image stream review of A's user: %v, want unavailable", err)
	}
	tc.wantReviews(t, 2, 0)
}
