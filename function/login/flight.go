package login

import (
	"context"
	"crypto/sha256"
	"sync"
)

// flightGroup runs one review per token at a time, shared by every login
// that waits for that token, like golang.org/x/sync/singleflight, with one
// difference: the review's context is cancelled as soon as the last waiter
// leaves, so a client that hangs up does not keep an API call (and its
// goroutine) alive for the whole review timeout.
type flightGroup struct {
	mu    sync.Mutex
	calls map[[sha256.Size]byte]*flightCall
}

type flightCall struct {
	done    chan struct{}
	answer  Answer // set before done is closed
	waiters int    // guarded by flightGroup.mu
	cancel  context.CancelFunc
}

// join adds a waiter to the review of key, starting it when there is none:
// start returns the review's context (false: no review may start, and join
// returns ErrBusy), run does the review in a goroutine of its own.
func (g *flightGroup) join(key [sha256.Size]byte, start func() (context.Context, context.CancelFunc, bool), run func(context.Context) Answer) (*flightCall, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		c.waiters++
		return c, nil
	}
	ctx, cancel, ok := start()
	if !ok {
		return nil, ErrBusy
	}
	if g.calls == nil {
		g.calls = make(map[[sha256.Size]byte]*flightCall)
	}
	c := &flightCall{done: make(chan struct{}), waiters: 1, cancel: cancel}
	g.calls[key] = c
	go func() {
		defer cancel()
		c.answer = run(ctx)
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		g.mu.Unlock()
		close(c.done)
	}()
	return c, nil
}

// leave removes a waiter that stopped waiting; the last one cancels the
// review, and a later login with the same token starts a new one.
func (g *flightGroup) leave(key [sha256.Size]byte, c *flightCall) {
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
