package metrics_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/qci-appci/qci-appci/function/metrics"
)

// TestNilMetricsObserveNothing calls every method on a nil *Metrics, as a
// package whose Options have none does.
func TestNilMetricsObserveNothing(t *testing.T) {
	var m *metrics.Metrics
	m.HTTPStarted()
	m.HTTPFinished(metrics.RouteBlob, "GET", 200, 10, time.Second)
	m.Login(metrics.LoginRobot, metrics.LoginOK)
	m.ClusterReview("", metrics.ReviewToken, metrics.ReviewAllowed)
	m.ReviewCache(true)
	m.UpstreamRequest(200, time.Second)
	m.UpstreamTokenFetch(metrics.TokenFetchOK)
}

func TestCounts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.HTTPStarted()
	m.HTTPStarted()
	m.HTTPFinished(metrics.RouteManifest, "GET", 200, 512, 3*time.Millisecond)
	m.HTTPFinished(metrics.RouteOther, "BREW", 405, 80, time.Millisecond) // a method no label may hold
	m.HTTPStarted()
	m.Login(metrics.LoginCluster, metrics.LoginDenied)
	m.ClusterReview("", metrics.ReviewToken, metrics.ReviewAllowed)
	m.ClusterReview("build01", metrics.ReviewAccess, metrics.ReviewError)
	m.ReviewCache(false)
	m.ReviewCache(true)
	m.ReviewCache(true)
	m.UpstreamRequest(0, time.Second)
	m.UpstreamRequest(404, time.Millisecond)
	m.UpstreamTokenFetch(metrics.TokenFetchRefused)
	want := `
# HELP qci_http_in_flight_requests HTTP requests being answered.
# TYPE qci_http_in_flight_requests gauge
qci_http_in_flight_requests 1
# HELP qci_http_requests_total HTTP requests answered, by route, method and status code.
# TYPE qci_http_requests_total counter
qci_http_requests_total{code="200",method="GET",route="manifest"} 1
qci_http_requests_total{code="405",method="OTHER",route="other"} 1
# HELP qci_http_response_bytes_total Bytes of response bodies written, by route.
# TYPE qci_http_response_bytes_total counter
qci_http_response_bytes_total{route="manifest"} 512
qci_http_response_bytes_total{route="other"} 80
# HELP qci_logins_total Logins at /v2/auth, by method (robot, cluster, refresh) and result.
# TYPE qci_logins_total counter
qci_logins_total{method="cluster",result="denied"} 1
# HELP qci_cluster_reviews_total TokenReviews and SubjectAccessReviews sent to a cluster, by cluster (its name in QCI_CLUSTERS_FILE, empty for the single cluster), kind and result.
# TYPE qci_cluster_reviews_total counter
qci_cluster_reviews_total{cluster="",kind="token_review",result="allowed"} 1
qci_cluster_reviews_total{cluster="build01",kind="subject_access_review",result="error"} 1
# HELP qci_review_cache_total Cluster logins answered from the review cache (hit) or sent for review (miss).
# TYPE qci_review_cache_total counter
qci_review_cache_total{result="hit"} 2
qci_review_cache_total{result="miss"} 1
# HELP qci_upstream_requests_total Registry requests sent to the upstream, by its status code (error: no answer).
# TYPE qci_upstream_requests_total counter
qci_upstream_requests_total{code="404"} 1
qci_upstream_requests_total{code="error"} 1
# HELP qci_upstream_token_fetches_total Fetches of the robot's upstream token, by result.
# TYPE qci_upstream_token_fetches_total counter
qci_upstream_token_fetches_total{result="refused"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"qci_http_in_flight_requests", "qci_http_requests_total", "qci_http_response_bytes_total", "qci_logins_total",
		"qci_cluster_reviews_total", "qci_review_cache_total", "qci_upstream_requests_total", "qci_upstream_token_fetches_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "qci_upstream_request_duration_seconds"); n != 1 {
		t.Errorf("upstream duration series: %d", n)
	}
}

// TestTwoInstancesTwoRegistries checks that nothing is registered globally:
// two instances in one process each have their own registry.
func TestTwoInstancesTwoRegistries(t *testing.T) {
	a, b := prometheus.NewRegistry(), prometheus.NewRegistry()
	metrics.New(a).Login(metrics.LoginRobot, metrics.LoginOK)
	metrics.New(b)
	if n, _ := testutil.GatherAndCount(b, "qci_logins_total"); n != 0 {
		t.Errorf("a login of one instance counted in the other: %d", n)
	}
}

func TestRouteOf(t *testing.T) {
	for path, want := range map[string]string{
		"/v2/":                              metrics.RouteBase,
		"/v2/auth":                          metrics.RouteAuth,
		"/v2/openshift/ci/manifests/latest": metrics.RouteManifest,
		"/v2/openshift/ci/blobs/sha256:" + strings.Repeat("a", 64):     metrics.RouteBlob,
		"/v2/openshift/ci/tags/list":                                   metrics.RouteTags,
		"/v2/openshift/ci/referrers/sha256:" + strings.Repeat("b", 64): metrics.RouteReferrers,
		"/healthz":                     metrics.RouteHealth,
		"/health":                      metrics.RouteHealth,
		"/v2/_catalog":                 metrics.RouteOther,
		"/v2/openshift%2Fci/tags/list": metrics.RouteOther,
		"/favicon.ico":                 metrics.RouteOther,
	} {
		if got := metrics.RouteOf(path); got != want {
			t.Errorf("RouteOf(%q) = %s, want %s", path, got, want)
		}
	}
}
