// Package reviewcache keeps the answers of cluster reviews (TokenReviews,
// SubjectAccessReviews) and runs one review per question at a time.
//
// Cache holds allowed and refused answers in two bounded LRUs
// (hashicorp/golang-lru), so that refusals, which anyone can cause in
// numbers, never evict an allowed answer. Flight shares one review among
// the callers that ask the same question at once, and cancels it as soon
// as none of them waits any more.
//
// Both are keyed by a SHA-256 (Key) of everything the answer depends on, so
// that no secret is kept as a key. Time is a parameter of every Cache call,
// so tests step an explicit now.
package reviewcache

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Key identifies one review question: the SHA-256 of what it asks.
type Key = [sha256.Size]byte

// Cache remembers review answers of type V in two bounded LRUs: allowed
// answers, and refusals (wrong credentials, denials). A refusal never
// evicts an allowed answer, however many arrive; each LRU drops its least
// recently used entry when full, never the whole cache. An entry expired
// at lookup is dropped. A Cache is safe for concurrent use.
type Cache[V any] struct {
	mu      sync.Mutex
	allowed *simplelru.LRU[Key, entry[V]]
	denied  *simplelru.LRU[Key, entry[V]]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New returns a cache of at most allowedSize allowed answers and
// deniedSize refusals. It panics on a size below 1, a programming error.
func New[V any](allowedSize, deniedSize int) *Cache[V] {
	allowed, err := simplelru.NewLRU[Key, entry[V]](allowedSize, nil)
	if err != nil {
		panic(fmt.Sprintf("reviewcache: allowed cache of size %d: %v", allowedSize, err))
	}
	denied, err := simplelru.NewLRU[Key, entry[V]](deniedSize, nil)
	if err != nil {
		panic(fmt.Sprintf("reviewcache: denied cache of size %d: %v", deniedSize, err))
	}
	return &Cache[V]{allowed: allowed, denied: denied}
}

// Get returns the answer kept for key that has not expired at now.
func (c *Cache[V]) Get(key Key, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, lru := range []*simplelru.LRU[Key, entry[V]]{c.allowed, c.denied} {
		if e, ok := lru.Get(key); ok {
			if now.Before(e.expires) {
				return e.v, true
			}
			lru.Remove(key)
		}
	}
	var zero V
	return zero, false
}

// AddAllowed keeps v as the allowed answer for key until expires,
// replacing a refusal of key.
func (c *Cache[V]) AddAllowed(key Key, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.denied.Remove(key)
	c.allowed.Add(key, entry[V]{v: v, expires: expires})
}

// AddDenied keeps v as the refusal for key until expires, replacing an
// allowed answer of key; it evicts only older refusals.
func (c *Cache[V]) AddDenied(key Key, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed.Remove(key)
	c.denied.Add(key, entry[V]{v: v, expires: expires})
}

// Len returns the number of allowed and of refused entries, expired ones
// not yet looked up included.
func (c *Cache[V]) Len() (allowed, denied int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allowed.Len(), c.denied.Len()
}
