// Package metrics holds qci-appci's Prometheus instruments, named as
// distribution, Harbor and zot name theirs (qci_http_requests_total,
// qci_logins_total, …). New registers them on the Registerer it is given,
// never on a global one; every method is a no-op on a nil *Metrics, so the
// packages that observe take one in their Options and need not check.
//
// Every label has a bounded set of values, listed below as constants: never
// a user, a tag, a digest or a path.
package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/qci-appci/qci-appci/function/registry"
)

// Routes: the route label of the HTTP metrics.
const (
	RouteBase      = "base"      // /v2/
	RouteAuth      = "auth"      // /v2/auth
	RouteManifest  = "manifest"  // /v2/<name>/manifests/<reference>
	RouteBlob      = "blob"      // /v2/<name>/blobs/<digest>
	RouteTags      = "tags"      // /v2/<name>/tags/list
	RouteReferrers = "referrers" // /v2/<name>/referrers/<digest>
	RouteHealth    = "health"    // /healthz, /health
	RouteOther     = "other"     // anything else
)

// Login methods: the method label of qci_logins_total.
const (
	LoginRobot   = "robot"
	LoginCluster = "cluster"
	LoginRefresh = "refresh"
)

// Login results: the result label of qci_logins_total.
const (
	LoginOK             = "ok"
	LoginBadCredentials = "bad_credentials"
	LoginDenied         = "denied"
	LoginUnavailable    = "unavailable"
	LoginRateLimited    = "rate_limited"
)

// Cluster review kinds and results: the labels of qci_cluster_reviews_total.
// For a TokenReview, denied means not authenticated (or not bound to an
// accepted audience); for a SubjectAccessReview, not allowed to pull.
const (
	ReviewToken  = "token_review"
	ReviewAccess = "subject_access_review"

	ReviewAllowed = "allowed"
	ReviewDenied  = "denied"
	ReviewError   = "error"
)

// Review cache results: the result label of qci_review_cache_total.
const (
	CacheHit  = "hit"
	CacheMiss = "miss"
)

// Upstream token fetch results: the result label of
// qci_upstream_token_fetches_total.
const (
	TokenFetchOK          = "ok"
	TokenFetchRefused     = "refused"     // the token endpoint refused the robot
	TokenFetchUnavailable = "unavailable" // unreachable, or an answer that is no token
)

// UpstreamError is the code label of an upstream request that got no answer.
const UpstreamError = "error"

// Metrics are the instruments of one instance.
type Metrics struct {
	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	httpInFlight     prometheus.Gauge
	httpBytes        *prometheus.CounterVec
	logins           *prometheus.CounterVec
	reviews          *prometheus.CounterVec
	reviewCache      *prometheus.CounterVec
	upstreamRequests *prometheus.CounterVec
	upstreamDuration prometheus.Histogram
	tokenFetches     *prometheus.CounterVec
}

// requestBuckets reach the minutes a large blob can stream for.
var requestBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// New registers the instruments on reg and returns them.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	return &Metrics{
		httpRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_http_requests_total",
			Help: "HTTP requests answered, by route, method and status code.",
		}, []string{"route", "method", "code"}),
		httpDuration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "qci_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer, by route.",
			Buckets: requestBuckets,
		}, []string{"route"}),
		httpInFlight: f.NewGauge(prometheus.GaugeOpts{
			Name: "qci_http_in_flight_requests",
			Help: "HTTP requests being answered.",
		}),
		httpBytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_http_response_bytes_total",
			Help: "Bytes of response bodies written, by route.",
		}, []string{"route"}),
		logins: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_logins_total",
			Help: "Logins at /v2/auth, by method (robot, cluster, refresh) and result.",
		}, []string{"method", "result"}),
		reviews: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_cluster_reviews_total",
			Help: "TokenReviews and SubjectAccessReviews sent to a cluster, by cluster (its name in QCI_CLUSTERS_FILE, empty for the single cluster), kind and result.",
		}, []string{"cluster", "kind", "result"}),
		reviewCache: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_review_cache_total",
			Help: "Cluster logins answered from the review cache (hit) or sent for review (miss).",
		}, []string{"result"}),
		upstreamRequests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_upstream_requests_total",
			Help: "Registry requests sent to the upstream, by its status code (error: no answer).",
		}, []string{"code"}),
		upstreamDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "qci_upstream_request_duration_seconds",
			Help:    "Time from sending a registry request upstream to its answer's headers.",
			Buckets: prometheus.DefBuckets,
		}),
		tokenFetches: f.NewCounterVec(prometheus.CounterOpts{
			Name: "qci_upstream_token_fetches_total",
			Help: "Fetches of the robot's upstream token, by result.",
		}, []string{"result"}),
	}
}

// HTTPStarted counts a request in flight; HTTPFinished ends it.
func (m *Metrics) HTTPStarted() {
	if m == nil {
		return
	}
	m.httpInFlight.Inc()
}

// HTTPFinished records an answered request: route is one of the Route
// constants, method is the request's (others than the HTTP methods count
// as OTHER), size the body bytes written.
func (m *Metrics) HTTPFinished(route, method string, code int, size int64, d time.Duration) {
	if m == nil {
		return
	}
	m.httpInFlight.Dec()
	m.httpRequests.WithLabelValues(route, methodLabel(method), codeLabel(code)).Inc()
	m.httpDuration.WithLabelValues(route).Observe(d.Seconds())
	m.httpBytes.WithLabelValues(route).Add(float64(size))
}

// Login counts a login attempt: method and result are of the Login
// constants.
func (m *Metrics) Login(method, result string) {
	if m == nil {
		return
	}
	m.logins.WithLabelValues(method, result).Inc()
}

// ClusterReview counts a review sent to a cluster: cluster is its name in
// QCI_CLUSTERS_FILE (a bounded set; empty for the single cluster), kind
// and result are of the Review constants.
func (m *Metrics) ClusterReview(cluster, kind, result string) {
	if m == nil {
		return
	}
	m.reviews.WithLabelValues(cluster, kind, result).Inc()
}

// ReviewCache counts a cluster login answered from the cache (hit) or not.
func (m *Metrics) ReviewCache(hit bool) {
	if m == nil {
		return
	}
	result := CacheMiss
	if hit {
		result = CacheHit
	}
	m.reviewCache.WithLabelValues(result).Inc()
}

// UpstreamRequest records a registry request sent upstream: its status
// code, 0 when it got no answer, and the time to the answer's headers.
func (m *Metrics) UpstreamRequest(code int, d time.Duration) {
	if m == nil {
		return
	}
	label := UpstreamError
	if code != 0 {
		label = codeLabel(code)
	}
	m.upstreamRequests.WithLabelValues(label).Inc()
	m.upstreamDuration.Observe(d.Seconds())
}

// UpstreamTokenFetch counts a fetch of the upstream token: result is of the
// TokenFetch constants.
func (m *Metrics) UpstreamTokenFetch(result string) {
	if m == nil {
		return
	}
	m.tokenFetches.WithLabelValues(result).Inc()
}

// methodLabel keeps the method label bounded: a client may send any token.
func methodLabel(method string) string {
	switch method {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return method
	}
	return "OTHER"
}

// codeLabel is a status code as a label; codes outside 100-599 (none that
// net/http writes) are one value.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code)
}

// RouteOf is the route label of a request's raw (escaped) path.
func RouteOf(escapedPath string) string {
	switch escapedPath {
	case "/healthz", "/health":
		return RouteHealth
	}
	r, err := registry.ParsePath(escapedPath)
	if err != nil {
		return RouteOther
	}
	switch r.Kind {
	case registry.KindBase:
		return RouteBase
	case registry.KindAuth:
		return RouteAuth
	case registry.KindManifest:
		return RouteManifest
	case registry.KindBlob:
		return RouteBlob
	case registry.KindTags:
		return RouteTags
	case registry.KindReferrers:
		return RouteReferrers
	}
	return RouteOther
}
