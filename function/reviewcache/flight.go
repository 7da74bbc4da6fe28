package reviewcache

import (
	"context"
	"sync"
	"time"
)

// Flight runs one review per key at a time, shared by every caller that
// asks while it runs, like golang.org/x/sync/singleflight, with one
// difference: the review's context is cancelled as soon as the last caller
// stops waiting, so a client that hangs up does not keep an API call (and
// its goroutine) alive for the whole review timeout. A caller that comes
// after that starts a new review. The zero Flight is ready to use and safe
// for concurrent use.
type Flight[V any] struct {
	mu    sync.Mutex
	calls map[Key]*call[V]
}

type call[V any] struct {
	done    chan struct{}
	v       V   // set before done is closed
	waiters int // guarded by Flight.mu
	cancel  context.CancelFunc
}

// Start begins a review: it returns the context the review runs in (one
// that outlives the caller, such as Detached's, since the review is shared)
// and its cancel function, or an error when no review may start now (no
// review slot free).
type Start func() (context.Context, context.CancelFunc, error)

// Do returns the answer of the review of key. When none is in flight, it
// calls start (under the Flight's lock) and runs run in a goroutine of its
// own with the context start returned; otherwise it waits for the review
// in flight. It returns start's error when no review could start, and
// context.Cause(ctx) when ctx ends first: then this caller no longer
// waits, and when it was the last one the review's context is cancelled.
func (g *Flight[V]) Do(ctx context.Context, key Key, start Start, run func(context.Context) V) (V, error) {
	c, err := g.join(key, start, run)
	if err != nil {
		var zero V
		return zero, err
	}
	select {
	case <-c.done:
		return c.v, nil
	case <-ctx.Done():
		g.leave(key, c)
		var zero V
		return zero, context.Cause(ctx)
	}
}

// Waiters reports how many callers wait for the review of key; 0 when
// none is in flight.
func (g *Flight[V]) Waiters(key Key) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c.waiters
	}
	return 0
}

func (g *Flight[V]) join(key Key, start Start, run func(context.Context) V) (*call[V], error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		c.waiters++
		return c, nil
	}
	rctx, cancel, err := start()
	if err != nil {
		return nil, err
	}
	if g.calls == nil {
		g.calls = make(map[Key]*call[V])
	}
	c := &call[V]{done: make(chan struct{}), waiters: 1, cancel: cancel}
	g.calls[key] = c
	go func() {
		defer cancel()
		c.v = run(rctx)
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// leave removes a caller that stopped waiting; the last one cancels the
// review and forgets it, so that a later caller starts a new one.
func (g *Flight[V]) leave(key Key, c *call[V]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	c.waiters--
	if c.waiters > 0 {
		return
	}
	c.cancel()
	if g.calls[key] == c {
		delete(g.calls, key)
	}
}

// Detached returns a context for a shared review started by the caller of
// ctx: it keeps ctx's values (trace, request logging) but not its
// cancellation, since other callers may wait for the review too, and ends
// after timeout whoever waits. Flight cancels it when nobody waits.
func Detached(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), timeout)
}
