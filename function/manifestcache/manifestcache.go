// Package manifestcache keeps image manifests by digest in memory for
// qci-appci. A manifest named by its digest never changes, so an answer
// kept once can be given again without asking the upstream. Only a body
// whose sha256 equals the digest is kept (the upstream's
// Docker-Content-Digest header is never trusted, as distribution's client
// does not trust it either), and the cache is bounded by bytes, keys plus
// values, evicting the least recently used entries until it is under its
// bound (golang/groupcache's nbytes accounting).
package manifestcache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
)

// MaxEntryBytes is the largest manifest kept: the distribution spec's
// limit on a manifest a registry must accept (4 MiB).
const MaxEntryBytes = 4 << 20

// Entry is one kept manifest: what a client needs to use it.
type Entry struct {
	// ContentType is the manifest's media type, as the upstream sent it.
	ContentType string
	// Body is the manifest's bytes; its sha256 is the key's digest. Callers
	// must not modify it.
	Body []byte
}

// Cache is a byte-bounded LRU of manifests by digest, safe for concurrent
// use. A nil *Cache is a cache that is off: it keeps and finds nothing.
type Cache struct {
	maxBytes int64

	mu     sync.Mutex
	nbytes int64 // keys plus values of every entry
	ll     *list.List
	items  map[string]*list.Element
}

type item struct {
	digest string
	entry  Entry
}

func (it *item) size() int64 {
	return int64(len(it.digest) + len(it.entry.ContentType) + len(it.entry.Body))
}

// New returns a cache of at most maxBytes, or nil (off) when maxBytes is
// not positive.
func New(maxBytes int64) *Cache {
	if maxBytes <= 0 {
		return nil
	}
	return &Cache{maxBytes: maxBytes, ll: list.New(), items: map[string]*list.Element{}}
}

// ValidDigest reports whether d is a digest this cache keeps: sha256 in
// its canonical form, "sha256:" and 64 lower-case hex digits.
func ValidDigest(d string) bool {
	hexPart, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hexPart) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(hexPart); i++ {
		if c := hexPart[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Get returns the manifest kept for digest and marks it recently used.
func (c *Cache) Get(digest string) (Entry, bool) {
	if c == nil {
		return Entry{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[digest]
	if !ok {
		return Entry{}, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*item).entry, true
}

// Add keeps body as the manifest of digest when it is one: the digest is
// valid, the body's sha256 equals it, and it is at most MaxEntryBytes and
// fits the bound. It evicts the least recently used entries until the
// cache is within its bound, and reports whether it kept the entry.
func (c *Cache) Add(digest, contentType string, body []byte) bool {
	if c == nil || !ValidDigest(digest) || len(body) > MaxEntryBytes {
		return false
	}
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != digest[len("sha256:"):] {
		return false
	}
	it := &item{digest: digest, entry: Entry{ContentType: contentType, Body: body}}
	if it.size() > c.maxBytes {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[digest]; ok {
		c.nbytes -= el.Value.(*item).size()
		el.Value = it
		c.ll.MoveToFront(el)
	} else {
		c.items[digest] = c.ll.PushFront(it)
	}
	c.nbytes += it.size()
	for c.nbytes > c.maxBytes {
		oldest := c.ll.Back()
		old := oldest.Value.(*item)
		c.ll.Remove(oldest)
		delete(c.items, old.digest)
		c.nbytes -= old.size()
	}
	return true
}

// Bytes is the size of every entry, keys plus values.
func (c *Cache) Bytes() int64 {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nbytes
}

// Len is the number of entries.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
