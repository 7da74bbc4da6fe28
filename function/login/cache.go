package login

import (
	"crypto/sha256"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// reviewCache remembers review answers under the SHA-256 of the token, in
// two bounded LRUs: allowed logins, and refusals (wrong credentials,
// denials). A refusal never evicts an allowed login, however many bogus
// tokens arrive; each LRU drops its least recently used entry when full,
// never the whole cache. Expired entries are dropped when looked up.
type reviewCache struct {
	mu      sync.Mutex
	allowed *simplelru.LRU[[sha256.Size]byte, allowedEntry]
	denied  *simplelru.LRU[[sha256.Size]byte, deniedEntry]
}

type allowedEntry struct {
	id      Identity
	expires time.Time
}

type deniedEntry struct {
	err     error
	expires time.Time
}

func newReviewCache(allowedSize, deniedSize int) *reviewCache {
	allowed, err := simplelru.NewLRU[[sha256.Size]byte, allowedEntry](allowedSize, nil)
	if err != nil {
		panic(fmt.Sprintf("login: allowed cache of size %d: %v", allowedSize, err))
	}
	denied, err := simplelru.NewLRU[[sha256.Size]byte, deniedEntry](deniedSize, nil)
	if err != nil {
		panic(fmt.Sprintf("login: denied cache of size %d: %v", deniedSize, err))
	}
	return &reviewCache{allowed: allowed, denied: denied}
}

// get returns the answer for key that has not expired at now.
func (c *reviewCache) get(key [sha256.Size]byte, now time.Time) (Answer, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.allowed.Get(key); ok {
		if now.Before(e.expires) {
			return Answer{Identity: e.id}, true
		}
		c.allowed.Remove(key)
	}
	if e, ok := c.denied.Get(key); ok {
		if now.Before(e.expires) {
			return Answer{Err: e.err}, true
		}
		c.denied.Remove(key)
	}
	return Answer{}, false
}

func (c *reviewCache) addAllowed(key [sha256.Size]byte, id Identity, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.denied.Remove(key)
	c.allowed.Add(key, allowedEntry{id: id, expires: expires})
}

func (c *reviewCache) addDenied(key [sha256.Size]byte, err error, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.allowed.Remove(key)
	c.denied.Add(key, deniedEntry{err: err, expires: expires})
}

// len returns the number of allowed and of refused entries.
func (c *reviewCache) len() (allowed, denied int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.allowed.Len(), c.denied.Len()
}
