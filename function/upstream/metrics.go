package upstream

import (
	"errors"
	"net/http"
	"time"

	"github.com/qci-appci/qci-appci/function/metrics"
)

// tokenFetchResult is the result label of a token request that ended with
// err.
func tokenFetchResult(err error) string {
	switch {
	case err == nil:
		return metrics.TokenFetchOK
	case errors.Is(err, ErrRobotRefused):
		return metrics.TokenFetchRefused
	default:
		return metrics.TokenFetchUnavailable
	}
}

// metricsTransport records each registry request sent upstream: its status
// code (qci_upstream_requests_total) and the time to its headers
// (qci_upstream_request_duration_seconds).
type metricsTransport struct {
	base    http.RoundTripper
	metrics *metrics.Metrics
	now     func() time.Time
}

var _ http.RoundTripper = (*metricsTransport)(nil)

// NewMetricsTransport wraps base to record its requests in m; with a nil m
// it returns base itself.
func NewMetricsTransport(base http.RoundTripper, m *metrics.Metrics) http.RoundTripper {
	if m == nil {
		return base
	}
	return &metricsTransport{base: base, metrics: m, now: time.Now}
}

func (t *metricsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := t.now()
	resp, err := t.base.RoundTrip(req)
	code := 0
	if err == nil {
		code = resp.StatusCode
	}
	t.metrics.UpstreamRequest(code, t.now().Sub(start))
	return resp, err
}
