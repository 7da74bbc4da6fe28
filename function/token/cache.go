package token

import (
	"sync"
	"time"
)

// maxCached bounds a VerifiedCache; expired entries go first.
const maxCached = 8192

// VerifiedCache remembers access tokens that verified, so that the many
// requests of one pull pay for the signature and JSON decoding once. An
// entry is found only by the exact token and host; exp and nbf are checked
// again on every hit, with the same leeway as Verify.
type VerifiedCache struct {
	keys *Keys
	mu   sync.RWMutex
	m    map[cacheKey]*Claims
}

type cacheKey struct{ raw, host string }

// NewVerifiedCache returns a cache in front of keys.
func NewVerifiedCache(keys *Keys) *VerifiedCache {
	return &VerifiedCache{keys: keys, m: make(map[cacheKey]*Claims)}
}

// VerifyAccess is Keys.Verify for access tokens, cached.
func (c *VerifiedCache) VerifyAccess(raw, host string, now time.Time) (*Claims, error) {
	k := cacheKey{raw, host}
	c.mu.RLock()
	claims, ok := c.m[k]
	c.mu.RUnlock()
	if ok {
		if current(claims, now) {
			return claims, nil
		}
		c.mu.Lock()
		delete(c.m, k)
		c.mu.Unlock()
	}
	claims, err := c.keys.Verify(raw, host, KindAccess, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCached {
		for kk, cc := range c.m {
			if !current(cc, now) {
				delete(c.m, kk)
			}
		}
		if len(c.m) >= maxCached {
			clear(c.m)
		}
	}
	c.m[k] = claims
	c.mu.Unlock()
	return claims, nil
}

// current repeats Verify's time checks for a cached token.
func current(c *Claims, now time.Time) bool {
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(Leeway)) {
		return false
	}
	return c.NotBefore == nil || !now.Before(c.NotBefore.Add(-Leeway))
}
