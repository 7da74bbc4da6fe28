package policy

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/qci-appci/qci-appci/function/keyedrate"
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

func identityOf(id login.Identity) identity {
	return identity{cluster: id.Cluster, name: id.Name, uid: id.UID}
}

// reviewLimit is a token bucket of fresh reviews per identity, the
// buckets in a fixed-size LRU (keyedrate, as function/loginlimit): an
// identity evicted by newer ones starts again with a full bucket, which
// takes thousands of valid cluster identities to exploit.
type reviewLimit struct {
	mu      sync.Mutex
	buckets *keyedrate.Buckets[identity]
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
	buckets, err := keyedrate.New[identity](r, max(burst, MaxScopes), limitEntries)
	if err != nil {
		panic(fmt.Sprintf("policy: review limit: %v", err)) // only for a size below 1
	}
	return &reviewLimit{buckets: buckets}
}

// retryAfter is how long until n fresh reviews fit id's bucket at now.
func (l *reviewLimit) retryAfter(now time.Time, id login.Identity, n int) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	wait, _ := l.buckets.Wait(now, identityOf(id), n)
	return wait
}

// take takes n fresh reviews of id's bucket at now, all or none: nil when
// they fit, else a LimitedError saying when they will. The first refusal
// since the bucket was last full is Newly.
func (l *reviewLimit) take(now time.Time, id login.Identity, n int) *LimitedError {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets.Get(identityOf(id))
	if b.Take(now, n) {
		return nil
	}
	wait, _ := b.Wait(now, n) // a refused Take leaves the bucket as it was
	return &LimitedError{RetryAfter: wait, Newly: b.Report()}
}
