// Package waitfor lets a test wait for a condition that another goroutine
// makes true (a review joined, a waiter counted) without sleeping a guess:
// it yields until the condition holds, and fails the test after a bound.
package waitfor

import (
	"runtime"
	"testing"
	"time"
)

// Bound is how long Until waits before it fails the test.
const Bound = 10 * time.Second

// Until yields until cond holds, and fails t after Bound, naming what it
// waited for.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}
