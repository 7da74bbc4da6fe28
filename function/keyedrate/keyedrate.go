// Package keyedrate keeps one token bucket (golang.org/x/time/rate) per
// key in a fixed-size LRU, for limits kept per client, per user name or
// per identity. Memory is bounded: past the size the least recently used
// key is dropped, and a key dropped so starts again with a full bucket.
//
// A bucket also remembers whether its key was reported as limited since
// the bucket was last full, so that a caller logs a key once per limited
// spell rather than once per refused attempt (Report), and it can count
// takes that may come (Hold), so that callers in flight at once cannot all
// count on the same last token.
//
// Time is a parameter of every call, so tests step an explicit now.
// Buckets are not safe for concurrent use: the caller holds a lock around
// every use of a Buckets and of the Bucket values it returns (the limiters
// that use it check several buckets under one lock, all or nothing).
package keyedrate

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Buckets are token buckets by key, at most size of them.
type Buckets[K comparable] struct {
	rate  rate.Limit
	burst int
	lru   *simplelru.LRU[K, *Bucket]
}

// New returns buckets that refill r tokens a second up to burst, for at
// most size keys. It fails on a rate that is not a positive finite number,
// a burst below 1 or a size below 1.
func New[K comparable](r float64, burst, size int) (*Buckets[K], error) {
	if !(r > 0) || math.IsInf(r, 0) {
		return nil, fmt.Errorf("rate %v must be a positive number", r)
	}
	if burst < 1 {
		return nil, fmt.Errorf("burst %d must be at least 1", burst)
	}
	lru, err := simplelru.NewLRU[K, *Bucket](size, nil)
	if err != nil {
		return nil, fmt.Errorf("size %d: %w", size, err)
	}
	return &Buckets[K]{rate: rate.Limit(r), burst: burst, lru: lru}, nil
}

// Get returns the bucket of key, made full if there is none, and makes
// key the most recently used.
func (b *Buckets[K]) Get(key K) *Bucket {
	k, ok := b.lru.Get(key)
	if !ok {
		k = &Bucket{lim: rate.NewLimiter(b.rate, b.burst)}
		b.lru.Add(key, k)
	}
	return k
}

// Peek returns the bucket of key, or nil when there is none, without
// making key recently used.
func (b *Buckets[K]) Peek(key K) *Bucket {
	k, _ := b.lru.Peek(key)
	return k
}

// Wait is Bucket.Wait of key's bucket, of a full one when key has none;
// it keeps nothing and does not make key recently used.
func (b *Buckets[K]) Wait(now time.Time, key K, n int) (wait time.Duration, short bool) {
	if k := b.Peek(key); k != nil {
		return k.Wait(now, n)
	}
	return waitFor(float64(n-b.burst), b.rate)
}

// Len is how many keys are kept.
func (b *Buckets[K]) Len() int { return b.lru.Len() }

// Bucket is the token bucket of one key.
type Bucket struct {
	lim *rate.Limiter
	// limited: reported as limited and not refilled to the full burst
	// since, so that a key hammering at the edge of its limit is reported
	// once, not once a refilled token.
	limited bool
	// held counts takes that may come (Hold), each counted against the
	// bucket by Wait until Release.
	held int
}

// Tokens is how many tokens the bucket has at now; a Hold takes none.
func (k *Bucket) Tokens(now time.Time) float64 { return k.lim.TokensAt(now) }

// Wait reports whether the bucket is short of n tokens beyond the held
// ones at now, and how long until it has them. It takes nothing.
func (k *Bucket) Wait(now time.Time, n int) (wait time.Duration, short bool) {
	return waitFor(float64(n+k.held)-k.lim.TokensAt(now), k.lim.Limit())
}

// waitFor is how long a bucket of rate r takes to refill missing tokens,
// and whether any are missing.
func waitFor(missing float64, r rate.Limit) (time.Duration, bool) {
	return time.Duration(max(0, missing) / float64(r) * float64(time.Second)), missing > 0
}

// Take takes n tokens at now, all or none, and reports whether it took
// them; held tokens are not reserved against it. A bucket full at now
// forgets that it was reported (see Report).
func (k *Bucket) Take(now time.Time, n int) bool {
	if k.lim.TokensAt(now) >= float64(k.lim.Burst()) {
		k.limited = false // quiet long enough to refill: report anew
	}
	return k.lim.AllowN(now, n)
}

// Report marks the key as limited and reports whether it was not since
// its bucket was last full at a Take: log the key when it says so, once
// per limited spell. The caller decides what limited means (a refused
// Take, a bucket left empty).
func (k *Bucket) Report() (newly bool) {
	newly = !k.limited
	k.limited = true
	return newly
}

// Hold counts one take that may come against the bucket until Release.
func (k *Bucket) Hold() { k.held++ }

// Release ends one Hold. A bucket made afresh since (its key was evicted)
// has none to end, and stays as it is.
func (k *Bucket) Release() {
	if k.held > 0 {
		k.held--
	}
}
