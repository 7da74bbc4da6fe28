package keyedrate

import (
	"math"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func newBuckets(t *testing.T, r float64, burst, size int) *Buckets[string] {
	t.Helper()
	b, err := New[string](r, burst, size)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantWait(t *testing.T, what string, wait time.Duration, short bool, want time.Duration, wantShort bool) {
	t.Helper()
	if wait != want || short != wantShort {
		t.Errorf("%s: wait %v short %v, want %v %v", what, wait, short, want, wantShort)
	}
}

func TestTakeBurstThenRefill(t *testing.T) {
	b := newBuckets(t, 2, 3, 8)
	k := b.Get("a")
	for i := range 3 {
		if !k.Take(t0, 1) {
			t.Fatalf("take %d of a burst of 3 refused", i+1)
		}
	}
	if k.Take(t0, 1) {
		t.Fatal("a fourth take of a burst of 3 allowed")
	}
	wait, short := k.Wait(t0, 1)
	wantWait(t, "empty bucket", wait, short, 500*time.Millisecond, true)
	if k.Take(t0.Add(499*time.Millisecond), 1) {
		t.Error("a take before the token is back allowed")
	}
	if !k.Take(t0.Add(500*time.Millisecond), 1) {
		t.Error("a take once the token is back refused")
	}
	if other := b.Get("b"); !other.Take(t0, 3) {
		t.Error("another key shares a's bucket")
	}
}

// A take of n takes all n or nothing: a refused take leaves the bucket as
// it was, and Wait says when n fit.
func TestTakeIsAllOrNothing(t *testing.T) {
	b := newBuckets(t, 1, 5, 8)
	k := b.Get("a")
	if !k.Take(t0, 3) {
		t.Fatal("3 of a full burst of 5 refused")
	}
	if k.Take(t0, 3) {
		t.Fatal("3 of the 2 left allowed")
	}
	if got := k.Tokens(t0); got != 2 {
		t.Errorf("%v tokens after a refused take, want the 2 left", got)
	}
	wait, short := k.Wait(t0, 3)
	wantWait(t, "3 of 2", wait, short, time.Second, true)
	wait, short = k.Wait(t0, 2)
	wantWait(t, "2 of 2", wait, short, 0, false)
}

// Report says newly once per limited spell: a new spell starts only after
// a Take finds the bucket full again.
func TestReportOncePerLimitedSpell(t *testing.T) {
	b := newBuckets(t, 10, 2, 8)
	k := b.Get("a")
	k.Take(t0, 2)
	if !k.Report() {
		t.Error("first report not newly")
	}
	for i := range 50 {
		now := t0.Add(time.Duration(i+1) * 100 * time.Millisecond) // one token back each time
		k.Take(now, 1)
		if k.Report() {
			t.Fatalf("report %d while hammering at the edge was newly again", i)
		}
	}
	quiet := t0.Add(time.Hour)
	k.Take(quiet, 2)
	if !k.Report() {
		t.Error("after a quiet hour refilled the bucket, the report was not newly")
	}
	if !b.Get("b").Report() {
		t.Error("another key's first report not newly")
	}
}

// Held takes count against Wait until released, and take no token.
func TestHoldCountsAgainstWait(t *testing.T) {
	b := newBuckets(t, 4, 2, 8)
	k := b.Get("a")
	k.Hold()
	wait, short := k.Wait(t0, 1)
	wantWait(t, "one held of 2", wait, short, 0, false)
	k.Hold()
	wait, short = k.Wait(t0, 1)
	wantWait(t, "two held of 2", wait, short, 250*time.Millisecond, true)
	wait, short = b.Wait(t0, "a", 1)
	wantWait(t, "Buckets.Wait of two held of 2", wait, short, 250*time.Millisecond, true)
	if got := k.Tokens(t0); got != 2 {
		t.Errorf("%v tokens with two held, want 2: a hold takes none", got)
	}
	k.Release()
	wait, short = k.Wait(t0, 1)
	wantWait(t, "one released", wait, short, 0, false)
	k.Release()
	k.Release() // more releases than holds: nothing to end
	k.Take(t0, 2)
	wait, short = k.Wait(t0, 1)
	wantWait(t, "empty, none held", wait, short, 250*time.Millisecond, true)
}

// A key not kept has a full bucket: Buckets.Wait keeps nothing for it.
func TestWaitOfAKeyNotKept(t *testing.T) {
	b := newBuckets(t, 2, 3, 8)
	wait, short := b.Wait(t0, "x", 3)
	wantWait(t, "3 of a full 3", wait, short, 0, false)
	wait, short = b.Wait(t0, "x", 4)
	wantWait(t, "4 of a full 3", wait, short, 500*time.Millisecond, true)
	if b.Peek("x") != nil || b.Len() != 0 {
		t.Errorf("Wait kept the key: %d kept", b.Len())
	}
}

// At most size keys are kept; the least recently used (by Get, not Peek)
// is dropped, and starts again with a full bucket.
func TestFixedSizeEvictsLeastRecentlyUsed(t *testing.T) {
	b := newBuckets(t, 0.001, 1, 2)
	b.Get("a").Take(t0, 1)
	b.Get("b").Take(t0, 1)
	b.Get("a")  // a is now the most recently used
	b.Peek("b") // a peek does not change that
	b.Get("c")
	if b.Len() != 2 || b.Peek("b") != nil || b.Peek("a") == nil {
		t.Fatalf("after a, b, a, c in 2: %d kept, b kept %v, a kept %v", b.Len(), b.Peek("b") != nil, b.Peek("a") != nil)
	}
	if _, short := b.Wait(t0, "a", 1); !short {
		t.Error("a, kept, lost its empty bucket")
	}
	if got := b.Get("b").Tokens(t0); got != 1 {
		t.Errorf("evicted b came back with %v tokens, want a full 1", got)
	}
	if b.Peek("a") != nil {
		t.Error("a, now the least recently used, was kept past the size")
	}
}

func TestNewRejectsBadArguments(t *testing.T) {
	for _, c := range []struct {
		r           float64
		burst, size int
	}{{0, 1, 1}, {-1, 1, 1}, {math.NaN(), 1, 1}, {math.Inf(1), 1, 1}, {1, 0, 1}, {1, 1, 0}} {
		if _, err := New[string](c.r, c.burst, c.size); err == nil {
			t.Errorf("New(%v, %d, %d) accepted", c.r, c.burst, c.size)
		}
	}
}
