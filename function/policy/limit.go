package policy

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"

	"github.com/qci-appci/qci-appci/function/login"
)

// Defaults of the limit on fresh (uncached) reviews per cluster identity.
// A logged-in user may name up to MaxScopes image streams of their choice
// per token request, each a SubjectAccessReview on the cluster unless
// cached; the limit keeps one identity from turning that into a flood.
// Real users stay far below it: a CI job pulls a few dozen distinct image
// streams, each reviewed once per cache lifetime (QCI_REVIEW_CACHE_TTL,
// 5 minutes), and a refresh re-asks at most MaxScopes. A burst of 100 takes
// a job's whole set at once, uncached, with room for a few refreshes; 5 a
// second (18,000 an hour) is more distinct image streams than any person
// or job pulls, while one identity can hold at most 5 SARs a second on the
// cluster. Cached answers and open images take nothing.
const (
	DefaultReviewRate  = 5    // fresh reviews a second, refilled per identity
	DefaultReviewBurst = 100  // fresh reviews in a row before an identity is limited
	limitEntries       = 4096 // identities kept; about 300 bytes each
)

// LimitedError refuses a token request that needed fresh reviews for an
// identity past its limit: no review was asked. The auth handler answers
// 429 with Retry-After.
type LimitedError struct {
	// RetryAfter is how long until the request's reviews fit the limit.
	RetryAfter time.Duration
	// Newly is true when the identity was not limited since its bucket was
	// last full: log this one, not every refused request.
	Newly bool
}

// Error says what was refused and when to retry.
func (e *LimitedError) Error() string {
	return fmt.Sprintf("too many image streams reviewed for this user; retry after %v", e.RetryAfter)
}

// identity is what a limit is kept per: the cluster that reviews, the
// user, and the uid (a user deleted and made again is someone else).
type identity struct{ cluster, name, uid string }

// reviewLimit is a token bucket of fresh reviews per identity, the
// buckets in a fixed-size LRU as function/loginlimit keeps its own: an
// identity evicted by newer ones starts again with a full bucket, which
// takes thousands of valid cluster identities to exploit.
type reviewLimit struct {
	rate  rate.Limit
	burst int

	mu      sync.Mutex
	buckets *simplelru.LRU[identity, *limitBucket]
}

type limitBucket struct {
	lim *rate.Limiter
	// limited: reported as limited and not refilled to the full burst
	// since, so that an identity at the edge of its limit is reported
	// once.
	limited bool
}

// newReviewLimit returns the limit; a rate that is not positive means
// DefaultReviewRate, a burst below 1 DefaultReviewBurst. The burst is at
// least MaxScopes, so that every request can be decided once the bucket
// is full.
func newReviewLimit(r float64, burst int) *reviewLimit {
	if !(r > 0) || math.IsInf(r, 0) {
		r = DefaultReviewRate
	}
	if burst < 1 {
		burst = DefaultReviewBurst
	}
	buckets, err := simplelru.NewLRU[identity, *limitBucket](limitEntries, nil)
	if err != nil {
		panic(fmt.Sprintf("policy: review limit: %v", err)) // only for a size below 1
	}
	return &reviewLimit{rate: rate.Limit(r), burst: max(burst, MaxScopes), buckets: buckets}
}

// retryAfter is how long until n fresh reviews fit id's bucket at now.
func (l *reviewLimit) retryAfter(now time.Time, id login.Identity, n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	tokens := float64(l.burst)
	if b, ok := l.buckets.Peek(identity{cluster: id.Cluster, name: id.Name, uid: id.UID}); ok {
		tokens = b.lim.TokensAt(now)
	}
	return time.Duration(max(0, float64(n)-tokens) / float64(l.rate) * float64(time.Second))
}

// take takes n fresh reviews of id's bucket at now, all or none: nil when
// they fit, else a LimitedError saying when they will.
func (l *reviewLimit) take(now time.Time, id login.Identity, n int) *LimitedError {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := identity{cluster: id.Cluster, name: id.Name, uid: id.UID}
	b, ok := l.buckets.Get(k)
	if !ok {
		b = &limitBucket{lim: rate.NewLimiter(l.rate, l.burst)}
		l.buckets.Add(k, b)
	}
	tokens := b.lim.TokensAt(now)
	if tokens >= float64(l.burst) {
		b.limited = false // quiet long enough to refill: report anew
	}
	if b.lim.AllowN(now, n) {
		return nil
	}
	e := &LimitedError{
		RetryAfter: time.Duration((float64(n) - tokens) / float64(l.rate) * float64(time.Second)),
		Newly:      !b.limited,
	}
	b.limited = true
	return e
}
