// Package function is qci-appci: a registry front door that logs people in
// with the upstream robot's credentials or a cluster token, issues its own
// short-lived JWTs, and streams reads of one upstream repository to holders
// of those tokens. New wires the auth handler and the streaming proxy
// handler onto their routes; NewFromEnv builds it lazily from the
// environment for the Functions Framework, where the Cloud Functions source
// that make gcf-source stages registers it as "QCIAppCI".
package function

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/qci-appci/qci-appci/function/auth"
	"github.com/qci-appci/qci-appci/function/clusterroute"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/loginlimit"
	"github.com/qci-appci/qci-appci/function/manifestcache"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/proxy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
	"github.com/qci-appci/qci-appci/function/upstream"
)

// New validates cfg and returns the function's handler, built from what
// the validation parsed (cfg.Parse): a cfg from config.Load is built from
// the clusters file as Load read it, not read again. It contacts nothing:
// the upstream token and the cluster clients come on first use. The
// secrets in cfg.SecretFiles are re-read when their files change.
func New(cfg config.Config) (http.Handler, error) {
	parsed, err := cfg.Parse()
	if err != nil {
		return nil, err
	}
	if len(cfg.SecretFiles) > 0 && cfg.SecretReloadInterval.Duration > 0 { // secrets given as files: re-read when they change
		r, err := newReloading(cfg, parsed, nil)
		if err != nil {
			return nil, err
		}
		return r, nil
	}
	p, err := newParts(cfg, parsed)
	if err != nil {
		return nil, err
	}
	h, _, err := p.handler(cfg, nil)
	return h, err
}

// parts are what an instance builds once and keeps for its life, secret
// rotations included: none of them depends on a secret (the robot
// credentials or the signing keys), and each holds state that a rebuild
// would throw away — the upstream transport's open connections, the
// cluster logins' review caches and clients, the policy's review cache,
// the failed-login limiter's buckets, the manifest cache.
type parts struct {
	log         *slog.Logger
	public      publicurl.Resolver
	upstreamURL *url.URL
	base        *http.Transport
	policy      *policy.Policy
	cluster     auth.ClusterLogin // nil: cluster login is off
	limiter     *loginlimit.Limiter
	manifests   *manifestcache.Cache
}

// newParts builds the parts of cfg that do not depend on its secrets,
// from parsed, what cfg.Parse made of cfg.
func newParts(cfg config.Config, parsed config.Parsed) (*parts, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	policyOpts := policy.Options{
		Upstream:      cfg.UpstreamRepository,
		Flat:          cfg.FlatRepository,
		FlatNamespace: cfg.AuthzNamespace,
		Open:          parsed.OpenImages,
		CacheTTL:      min(cfg.ReviewCacheTTL.Duration, cfg.TokenTTL.Duration),
		Metrics:       cfg.Metrics,
	}
	var cluster auth.ClusterLogin
	if parsed.Clusters != nil {
		rt := clusterroute.New(parsed.Clusters, clusterroute.Options{
			CacheTTL: min(cfg.ReviewCacheTTL.Duration, cfg.TokenTTL.Duration),
			Logger:   log,
			Metrics:  cfg.Metrics,
		})
		// Clusters with authorization {imageStreams: true} review each
		// image stream, at the cluster that authenticated the user.
		cluster, policyOpts.Reviewer, policyOpts.ImageStreamClusters = rt, rt, rt.ImageStreamClusters()
	} else if login.ClusterConfigured(cfg.Kubeconfig) {
		c := login.NewCluster(login.ClusterOptions{
			Kubeconfig: cfg.Kubeconfig,
			Audiences:  cfg.TokenAudiences,
			CacheTTL:   min(cfg.ReviewCacheTTL.Duration, cfg.TokenTTL.Duration),
			Logger:     log,
			Metrics:    cfg.Metrics,
		})
		cluster, policyOpts.Reviewer = c, policy.ReviewFunc(c.ReviewImageStream)
	} else {
		log.Info("cluster login is off: no QCI_KUBECONFIG and not running in a cluster; only the robot can log in")
	}
	limiter, err := loginlimit.New(loginlimit.Options{Rate: float64(cfg.LoginRate), Burst: int(cfg.LoginBurst)})
	if err != nil {
		return nil, fmt.Errorf("function: %w", err)
	}
	return &parts{
		log:         log,
		public:      parsed.Public,
		upstreamURL: parsed.UpstreamURL,
		base:        upstream.NewTransport(),
		policy:      policy.New(policyOpts),
		cluster:     cluster,
		limiter:     limiter,
		manifests:   manifestcache.New(cfg.ManifestCacheBytes.N),
	}, nil
}

// secrets are what cfg's secrets determine: the signing keys, and the
// robot login with the upstream token source that logs in as the robot
// (and caches its upstream token).
type secrets struct {
	signingKey         config.Secret
	username, password config.Secret
	keys               *token.Keys
	robot              *login.Robot
	source             *upstream.TokenSource
}

// handler builds the function's handler from p and cfg's secrets. Of
// prev, the secrets the current handler was built from (nil: none), it
// keeps what cfg's secrets leave unchanged: the keys when the signing key
// is the same, the robot login and the token source (with its cached
// upstream token) when the robot credentials are. A new token source
// fetches its first upstream token with the new credentials.
func (p *parts) handler(cfg config.Config, prev *secrets) (http.Handler, *secrets, error) {
	s := &secrets{signingKey: cfg.SigningKey, username: cfg.RobotUsername, password: cfg.RobotPassword}
	if prev != nil && prev.signingKey == s.signingKey {
		s.keys = prev.keys
	} else {
		keys, err := token.NewKeys(cfg.SigningKeys(), max(cfg.TokenTTL.Duration, cfg.RefreshTTL.Duration))
		if err != nil {
			return nil, nil, fmt.Errorf("function: %w", err)
		}
		s.keys = keys
	}
	if prev != nil && prev.username == s.username && prev.password == s.password {
		s.robot, s.source = prev.robot, prev.source
	} else {
		s.robot = login.NewRobot(string(s.username), string(s.password))
		s.source = upstream.NewTokenSource(upstream.TokenSourceOptions{
			URL:        p.upstreamURL,
			Repository: cfg.UpstreamRepository,
			Username:   string(s.username),
			Password:   string(s.password),
			Transport:  p.base,
			TokenHosts: cfg.UpstreamTokenHosts,
			Logger:     p.log,
			Metrics:    cfg.Metrics,
		})
	}
	authHandler := auth.New(auth.Options{
		Policy:  p.policy,
		Robot:   s.robot,
		Cluster: p.cluster,
		Issuer:  &token.Issuer{Keys: s.keys, AccessTTL: cfg.TokenTTL.Duration, RefreshTTL: cfg.RefreshTTL.Duration},
		Public:  p.public,
		Logger:  p.log,
		Metrics: cfg.Metrics,

		Limiter:        p.limiter,
		ClientIPHeader: cfg.ClientIPHeader,
	})
	proxyHandler := proxy.New(proxy.Options{
		Repository: cfg.UpstreamRepository,
		Upstream:   p.upstreamURL,
		Keys:       s.keys,
		Public:     p.public,
		Transport:  upstream.NewAuthTransport(upstream.NewMetricsTransport(p.base, cfg.Metrics), s.source),
		Manifests:  p.manifests,
		Logger:     p.log,
	})
	return &router{auth: authHandler, proxy: proxyHandler, prefetch: s.source.Prefetch}, s, nil
}

// router dispatches on the raw path. It is not an http.ServeMux on purpose:
// ServeMux cleans paths and redirects, and the proxy must see the raw path.
type router struct {
	auth, proxy http.Handler
	// prefetch starts the upstream token fetch in the background: a client
	// at /v2/ or /v2/auth is about to pull.
	prefetch func()
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.EscapedPath()
	if isPullStart(p, r.Method) {
		rt.prefetch()
	}
	switch {
	case p == "/v2/auth":
		rt.auth.ServeHTTP(w, r)
	case p == "/v2" || strings.HasPrefix(p, "/v2/"):
		rt.proxy.ServeHTTP(w, r)
	case p == "/healthz" || p == "/health":
		health(w, r)
	default:
		registry.WriteError(w, http.StatusNotFound, registry.CodeUnsupported, "not found: this is a registry; use /v2/")
	}
}

// isPullStart reports whether a request is how a pull begins: the probe
// GET or HEAD /v2/, or a login at /v2/auth.
func isPullStart(path, method string) bool {
	switch path {
	case "/v2/", "/v2":
		return method == http.MethodGet || method == http.MethodHead
	case "/v2/auth":
		return method == http.MethodGet || method == http.MethodPost
	}
	return false
}

func health(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		registry.WriteError(w, http.StatusMethodNotAllowed, registry.CodeUnsupported, "use GET")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}
