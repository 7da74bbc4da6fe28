// Package upstream reaches the upstream registry for qci-appci: a shared,
// tuned HTTP transport, the robot's upstream token (found through the
// upstream's own challenge, sent only into the upstream's trust domain,
// fetched lazily or prefetched when a pull is coming, cached and shared),
// and a RoundTripper that adds that token and retries once when it goes
// stale.
package upstream

import "errors"

// Errors that mean the upstream cannot be used now: clients get 503.
var (
	// ErrUnavailable: the upstream registry or its token endpoint did not
	// answer, or answered something unusable.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrRobotRefused: the upstream refused the robot credentials, or a
	// fresh upstream token.
	ErrRobotRefused = errors.New("upstream refused the robot credentials")
)
