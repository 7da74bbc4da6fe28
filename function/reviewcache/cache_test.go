package reviewcache

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func k(s string) Key { return sha256.Sum256([]byte(s)) }

var errDenied = errors.New("denied")

// A flood of refusals evicts only older refusals, never an allowed answer.
func TestDenialsNeverEvictAllowedEntries(t *testing.T) {
	c := New[error](2, 3)
	c.AddAllowed(k("alice"), nil, t0.Add(time.Hour))
	c.AddAllowed(k("bob"), nil, t0.Add(time.Hour))
	for i := range 1000 {
		c.AddDenied(k(fmt.Sprint("bogus", i)), errDenied, t0.Add(time.Hour))
	}
	for _, u := range []string{"alice", "bob"} {
		if v, ok := c.Get(k(u), t0); !ok || v != nil {
			t.Errorf("%s after 1000 denials: %v %v, want the allowed answer", u, v, ok)
		}
	}
	if a, d := c.Len(); a != 2 || d != 3 {
		t.Errorf("Len = %d allowed, %d denied; want 2, 3 (bounded)", a, d)
	}
	if v, ok := c.Get(k("bogus999"), t0); !ok || !errors.Is(v, errDenied) {
		t.Errorf("newest denial: %v %v", v, ok)
	}
	if _, ok := c.Get(k("bogus0"), t0); ok {
		t.Error("the oldest denial was not evicted")
	}
	// A full allowed LRU drops its least recently used entry, not all.
	c.Get(k("alice"), t0)
	c.AddAllowed(k("carol"), nil, t0.Add(time.Hour))
	if _, ok := c.Get(k("bob"), t0); ok {
		t.Error("bob, least recently used, was kept")
	}
	for _, u := range []string{"alice", "carol"} {
		if _, ok := c.Get(k(u), t0); !ok {
			t.Errorf("%s was evicted", u)
		}
	}
}

// Entries expire at their time and are dropped when looked up.
func TestExpiry(t *testing.T) {
	c := New[string](4, 4)
	c.AddAllowed(k("a"), "alice", t0.Add(time.Minute))
	c.AddDenied(k("d"), "nope", t0.Add(10*time.Second))
	if v, ok := c.Get(k("a"), t0.Add(time.Minute-time.Nanosecond)); !ok || v != "alice" {
		t.Errorf("allowed before expiry: %q %v", v, ok)
	}
	if v, ok := c.Get(k("d"), t0.Add(9*time.Second)); !ok || v != "nope" {
		t.Errorf("denied before expiry: %q %v", v, ok)
	}
	if _, ok := c.Get(k("d"), t0.Add(10*time.Second)); ok {
		t.Error("a denial outlived its expiry")
	}
	if _, ok := c.Get(k("a"), t0.Add(time.Minute)); ok {
		t.Error("an allowed answer outlived its expiry")
	}
	if a, d := c.Len(); a != 0 || d != 0 {
		t.Errorf("expired entries kept after lookup: %d, %d", a, d)
	}
}

// An answer replaces the other kind's answer for the same key.
func TestAnswerReplacesTheOtherKind(t *testing.T) {
	c := New[string](4, 4)
	c.AddAllowed(k("x"), "yes", t0.Add(time.Hour))
	c.AddDenied(k("x"), "no", t0.Add(time.Hour))
	if v, _ := c.Get(k("x"), t0); v != "no" {
		t.Errorf("after a denial: %q", v)
	}
	c.AddAllowed(k("x"), "yes", t0.Add(time.Hour))
	if v, _ := c.Get(k("x"), t0); v != "yes" {
		t.Errorf("after an allowed answer: %q", v)
	}
	if a, d := c.Len(); a != 1 || d != 0 {
		t.Errorf("Len = %d, %d; want one entry", a, d)
	}
}
