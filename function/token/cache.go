package token

import (
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxCached bounds a VerifiedCache. An access token of ours is about 1 KiB
// with its claims, so the cache holds at most a few MiB; least recently
// used entries go first, never the whole cache, so a flood of new tokens
// cannot push out the ones a pull in progress keeps using.
const maxCached = 4096

// VerifiedCache remembers access tokens that verified, so that the many
// requests of one pull pay for the signature and JSON decoding once. An
// entry is found only by the exact token and host; exp and nbf are checked
// again on every hit, with the same leeway as Verify.
type VerifiedCache struct {
	keys *Keys
	m    *lru.Cache[cacheKey, *Claims]
}

type cacheKey struct{ raw, host string }

// NewVerifiedCache returns a cache in front of keys.
func NewVerifiedCache(keys *Keys) *VerifiedCache {
	m, err := lru.New[cacheKey, *Claims](maxCached)
	if err != nil { // only for a size below 1
		panic(err)
	}
	return &VerifiedCache{keys: keys, m: m}
}

// VerifyAccess is Keys.Verify for access tokens, cached.
func (c *VerifiedCache) VerifyAccess(raw, host string, now time.Time) (*Claims, error) {
	k := cacheKey{raw, host}
	if claims, ok := c.m.Get(k); ok {
		if current(claims, now) {
			return claims, nil
		}
		c.m.Remove(k)
	}
	claims, err := c.keys.Verify(raw, host, KindAccess, now)
	if err != nil {
		return nil, err
	}
	c.m.Add(k, claims)
	return claims, nil
}

// Len is how many verified tokens the cache holds.
func (c *VerifiedCache) Len() int { return c.m.Len() }

// current repeats Verify's time checks for a cached token.
func current(c *Claims, now time.Time) bool {
	if c.ExpiresAt == nil || !now.Before(c.ExpiresAt.Add(Leeway)) {
		return false
	}
	return c.NotBefore == nil || !now.Before(c.NotBefore.Add(-Leeway))
}
