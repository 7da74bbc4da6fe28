package manifestcache_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/manifestcache"
)

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

const mediaType = "application/vnd.oci.image.manifest.v1+json"

func manifest(i, size int) []byte {
	b := []byte(fmt.Sprintf(`{"schemaVersion":2,"n":%d,"pad":"`, i))
	b = append(b, strings.Repeat("x", max(0, size-len(b)-2))...)
	return append(b, `"}`...)
}

func TestKeepsOnlyVerifiedBodies(t *testing.T) {
	c := manifestcache.New(1 << 20)
	body := manifest(1, 500)
	d := digestOf(body)
	other := manifest(2, 500)
	if c.Add(d, mediaType, other) {
		t.Error("kept a body whose sha256 is not the digest")
	}
	if _, ok := c.Get(d); ok {
		t.Error("found a body whose sha256 is not the digest")
	}
	for _, bad := range []string{strings.ToUpper(d), "sha512:" + d[7:], d[:70], "sha256:" + strings.Repeat("g", 64), ""} {
		if c.Add(bad, mediaType, body) {
			t.Errorf("kept under digest %q", bad)
		}
	}
	if !c.Add(d, mediaType, body) {
		t.Fatal("did not keep a verified body")
	}
	e, ok := c.Get(d)
	if !ok || string(e.Body) != string(body) || e.ContentType != mediaType {
		t.Errorf("Get = %q %v", e.ContentType, ok)
	}
}

// TestStaysWithinItsBound: keys plus values never exceed the bound; the
// least recently used entries go first (groupcache's TestCacheEviction).
func TestStaysWithinItsBound(t *testing.T) {
	const maxBytes = 10_000
	c := manifestcache.New(maxBytes)
	var digests []string
	for i := range 100 {
		body := manifest(i, 900)
		d := digestOf(body)
		digests = append(digests, d)
		if !c.Add(d, mediaType, body) {
			t.Fatalf("entry %d not kept", i)
		}
		if i == 50 {
			c.Get(digests[45]) // used recently: outlives its neighbours
		}
		if n := c.Bytes(); n > maxBytes {
			t.Fatalf("after %d entries: %d bytes, bound %d", i+1, n, maxBytes)
		}
	}
	entry := int64(len(digests[0]) + len(mediaType) + 900)
	if c.Len() != int(maxBytes/entry) || c.Bytes() != int64(c.Len())*entry {
		t.Errorf("%d entries, %d bytes; want %d entries of %d bytes", c.Len(), c.Bytes(), maxBytes/entry, entry)
	}
	if _, ok := c.Get(digests[0]); ok {
		t.Error("the oldest entry survived")
	}
	if _, ok := c.Get(digests[99]); !ok {
		t.Error("the newest entry was evicted")
	}
	// Adding the same digest again does not count it twice.
	before := c.Bytes()
	body := manifest(99, 900)
	c.Add(digests[99], mediaType, body)
	if c.Bytes() != before {
		t.Errorf("re-adding an entry changed the size from %d to %d", before, c.Bytes())
	}
}

func TestEntryLimits(t *testing.T) {
	c := manifestcache.New(16 << 20)
	big := manifest(1, manifestcache.MaxEntryBytes+1)
	if c.Add(digestOf(big), mediaType, big) {
		t.Error("kept a manifest over the spec's 4 MiB")
	}
	small := manifestcache.New(100)
	body := manifest(2, 200)
	if small.Add(digestOf(body), mediaType, body) || small.Bytes() != 0 {
		t.Error("kept an entry larger than the whole cache")
	}
}

func TestOff(t *testing.T) {
	c := manifestcache.New(0)
	body := manifest(1, 100)
	if c != nil || c.Add(digestOf(body), mediaType, body) || c.Len() != 0 || c.Bytes() != 0 {
		t.Error("a cache of 0 bytes keeps something")
	}
	if _, ok := c.Get(digestOf(body)); ok {
		t.Error("a cache of 0 bytes finds something")
	}
}
