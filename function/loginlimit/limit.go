// Package loginlimit limits failed logins: one token bucket per client
// address and one per username, kept in fixed-size LRUs. Only failed logins
// take a token; a key whose bucket is empty is limited until it refills, and
// the auth handler answers 429 before any cluster review for it.
//
// Memory is bounded: each LRU (a keyedrate.Buckets) keeps at most Size
// keys, and a key evicted by newer ones starts again with a full bucket.
// That is the trade-off of a fixed size (as in tailscale's util/limiter),
// and one reason to limit by address and by username separately: rotating
// usernames does not free an address, and many addresses with one username
// stay limited by it.
//
// Time is a parameter of every call, so tests step an explicit now.
package loginlimit

import (
	"fmt"
	"sync"
	"time"

	"github.com/qci-appci/qci-appci/function/keyedrate"
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
	mu sync.Mutex
	// Each bucket's Hold counts the logins let through by Begin whose
	// outcome is not known yet: each may still fail and take a token, so
	// Begin counts them against the bucket. Without that, every login
	// arriving while reviews are in flight would see the same last token.
	addrs *keyedrate.Buckets[string]
	users *keyedrate.Buckets[string]
}

// New returns a limiter; it fails on a rate or burst that is not positive.
func New(o Options) (*Limiter, error) {
	if o.Size <= 0 {
		o.Size = DefaultSize
	}
	addrs, err := keyedrate.New[string](o.Rate, o.Burst, o.Size)
	if err != nil {
		return nil, fmt.Errorf("loginlimit: %w", err)
	}
	users, err := keyedrate.New[string](o.Rate, o.Burst, o.Size)
	if err != nil {
		return nil, fmt.Errorf("loginlimit: %w", err)
	}
	return &Limiter{addrs: addrs, users: users}, nil
}

// Limited reports whether the address or the username is limited at now,
// and how long until both may fail once more. It takes no token.
func (l *Limiter) Limited(now time.Time, addr, user string) (retryAfter time.Duration, limited bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ra, la := l.addrs.Wait(now, addr, 1)
	ru, lu := l.users.Wait(now, user, 1)
	return max(ra, ru), la || lu
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
	a := l.addrs.Get(addr)
	retryAfter, limited := a.Wait(now, 1)
	var u *keyedrate.Bucket
	if user != "" {
		u = l.users.Get(user)
		ru, lu := u.Wait(now, 1)
		retryAfter, limited = max(retryAfter, ru), limited || lu
	}
	if limited {
		return Pending{}, retryAfter, false
	}
	a.Hold()
	if u != nil {
		u.Hold()
	}
	return Pending{addr: addr, user: user}, 0, true
}

// End records the outcome of a login let through by Begin: a failure takes
// a token as Failed does (and returns what Failed returns), a success or a
// login that ended without an answer (the cluster down, the client gone)
// takes none.
func (l *Limiter) End(now time.Time, p Pending, failed bool) []Key {
	l.mu.Lock()
	for _, b := range []*keyedrate.Bucket{l.addrs.Peek(p.addr), l.users.Peek(p.user)} {
		if b != nil {
			b.Release() // an evicted key starts afresh
		}
	}
	l.mu.Unlock()
	if !failed {
		return nil
	}
	return l.Failed(now, p.addr, p.user)
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
		buckets *keyedrate.Buckets[string]
		kind    Kind
		val     string
	}{{l.addrs, Address, addr}, {l.users, Username, user}} {
		if k.kind == Username && k.val == "" {
			continue
		}
		b := k.buckets.Get(k.val)
		b.Take(now, 1)
		if b.Tokens(now) < 1 && b.Report() {
			newly = append(newly, Key{Kind: k.kind, Value: k.val})
		}
	}
	return newly
}
