// Package loginlimit limits failed logins: one token bucket per client
// address and one per username, kept in fixed-size LRUs. Only failed logins
// take a token; a key whose bucket is empty is limited until it refills, and
// the auth handler answers 429 before any cluster review for it.
//
// Memory is bounded: each LRU keeps at most Size keys, and a key evicted by
// newer ones starts again with a full bucket. That is the trade-off of a
// fixed size (as in tailscale's util/limiter), and one reason to limit by
// address and by username separately: rotating usernames does not free an
// address, and many addresses with one username stay limited by it.
//
// Time is a parameter of every call, so tests step an explicit now.
package loginlimit

import (
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Defaults. A correct client never fails a login, so it never takes a token;
// the numbers only have to leave room for the failures of a real fleet
// behind one NAT address, with one username for all its pods. A CI pull
// storm of 2,000 pods starting within five minutes, every one of them with a
// bad credential, is 6.7 failed logins a second with a start of a few
// hundred at once: under a refill of 10 a second and a burst of 600.
const (
	DefaultRate  = 10   // failed logins a second, refilled per key
	DefaultBurst = 600  // failed logins in a row before a key is limited
	DefaultSize  = 2048 // keys of each kind; about 300 bytes each
)

// Kind says what a key limits.
type Kind string

// The two kinds of keys.
const (
	Address  Kind = "address"
	Username Kind = "username"
)

// Key is one limited client address or username.
type Key struct {
	Kind  Kind
	Value string
}

// Options configure a Limiter.
type Options struct {
	// Rate is how many failed logins a second a key gets back.
	Rate float64
	// Burst is how many failed logins a key may have in a row.
	Burst int
	// Size is how many keys of each kind are kept; zero means DefaultSize.
	Size int
}

// Limiter limits failed logins by client address and by username. It is
// safe for concurrent use.
type Limiter struct {
	rate  rate.Limit
	burst int

	mu    sync.Mutex
	addrs *simplelru.LRU[string, *bucket]
	users *simplelru.LRU[string, *bucket]
}

type bucket struct {
	lim *rate.Limiter
	// limited: reported as limited and not refilled to the full burst
	// since, so that a key hammering at the edge of its limit is reported
	// once, not once a refilled token.
	limited bool
	// pending counts logins let through by Begin whose outcome is not
	// known yet: each may still fail and take a token, so Begin counts them
	// against the bucket. Without that, every login arriving while reviews
	// are in flight would see the same last token.
	pending int
}

// New returns a limiter; it fails on a rate or burst that is not positive.
func New(o Options) (*Limiter, error) {
	if !(o.Rate > 0) || math.IsInf(o.Rate, 0) {
		return nil, fmt.Errorf("loginlimit: rate %v must be a positive number", o.Rate)
	}
	if o.Burst < 1 {
		return nil, fmt.Errorf("loginlimit: burst %d must be at least 1", o.Burst)
	}
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	addrs, err := simplelru.NewLRU[string, *bucket](o.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("loginlimit: %w", err)
	}
	users, err := simplelru.NewLRU[string, *bucket](o.Size, nil)
	if err != nil {
		return nil, fmt.Errorf("loginlimit: %w", err)
	}
	return &Limiter{rate: rate.Limit(o.Rate), burst: o.Burst, addrs: addrs, users: users}, nil
}

// Limited reports whether the address or the username is limited at now,
// and how long until both may fail once more. It takes no token.
func (l *Limiter) Limited(now time.Time, addr, user string) (retryAfter time.Duration, limited bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limited(now, peek(l.addrs, addr), peek(l.users, user))
}

func (l *Limiter) limited(now time.Time, buckets ...*bucket) (retryAfter time.Duration, limited bool) {
	for _, b := range buckets {
		if b == nil {
			continue
		}
		missing := 1 + float64(b.pending) - b.lim.TokensAt(now)
		if missing <= 0 {
			continue
		}
		retryAfter = max(retryAfter, time.Duration(missing/float64(l.rate)*float64(time.Second)))
		limited = true
	}
	return retryAfter, limited
}

// Pending is a login let through by Begin; End it with its outcome.
type Pending struct {
	addr, user string
}

// Begin lets a login that may fail through, unless the address or the
// username is limited at now: then it says how long until one is let
// through again. A login let through counts against both buckets until
// End, so that logins in flight at once cannot all spend the same token;
// it takes a token only if End says it failed.
//
// An empty user is limited by its address alone (see Failed).
func (l *Limiter) Begin(now time.Time, addr, user string) (p Pending, retryAfter time.Duration, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.bucket(l.addrs, addr)
	var u *bucket
	if user != "" {
		u = l.bucket(l.users, user)
	}
	if retryAfter, limited := l.limited(now, a, u); limited {
		return Pending{}, retryAfter, false
	}
	a.pending++
	if u != nil {
		u.pending++
	}
	return Pending{addr: addr, user: user}, 0, true
}

// End records the outcome of a login let through by Begin: a failure takes
// a token as Failed does (and returns what Failed returns), a success or a
// login that ended without an answer (the cluster down, the client gone)
// takes none.
func (l *Limiter) End(now time.Time, p Pending, failed bool) []Key {
	l.mu.Lock()
	for _, b := range []*bucket{peek(l.addrs, p.addr), peek(l.users, p.user)} {
		if b != nil && b.pending > 0 { // an evicted key starts afresh
			b.pending--
		}
	}
	l.mu.Unlock()
	if !failed {
		return nil
	}
	return l.Failed(now, p.addr, p.user)
}

// bucket returns the bucket of key, made full if there is none.
func (l *Limiter) bucket(lru *simplelru.LRU[string, *bucket], key string) *bucket {
	b, ok := lru.Get(key)
	if !ok {
		b = &bucket{lim: rate.NewLimiter(l.rate, l.burst)}
		lru.Add(key, b)
	}
	return b
}

// Failed records a failed login of user from addr at now, and returns the
// keys this failure limited that were not reported since their bucket was
// last full: log those, once, not every refused attempt. An empty user
// takes a token of the address alone: the caller passes "" where the name
// means nothing (a cluster token names its own user, and every kubelet of
// the credential provider sends the same name), so that nobody can spend
// a name's bucket for everyone who sends it.
func (l *Limiter) Failed(now time.Time, addr, user string) []Key {
	l.mu.Lock()
	defer l.mu.Unlock()
	var newly []Key
	for _, k := range []struct {
		lru  *simplelru.LRU[string, *bucket]
		kind Kind
		val  string
	}{{l.addrs, Address, addr}, {l.users, Username, user}} {
		if k.kind == Username && k.val == "" {
			continue
		}
		b := l.bucket(k.lru, k.val)
		if b.lim.TokensAt(now) >= float64(l.burst) {
			b.limited = false // quiet long enough to refill: report anew
		}
		b.lim.AllowN(now, 1)
		if b.lim.TokensAt(now) < 1 && !b.limited {
			b.limited = true
			newly = append(newly, Key{Kind: k.kind, Value: k.val})
		}
	}
	return newly
}

// peek returns the bucket of key without making it recently used, or nil.
func peek(lru *simplelru.LRU[string, *bucket], key string) *bucket {
	b, _ := lru.Peek(key)
	return b
}
