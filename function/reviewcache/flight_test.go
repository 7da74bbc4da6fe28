package reviewcache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/waitfor"
)

var errBusy = errors.New("busy")

// review is a review that waits for release or for its context, and says
// which happened.
type review struct {
	arrived   chan struct{}
	release   chan struct{}
	cancelled chan error // the review's context error, once it ended
	runs      int        // only read after the runs ended
}

func newReview() *review {
	return &review{arrived: make(chan struct{}, 8), release: make(chan struct{}), cancelled: make(chan error, 8)}
}

func (r *review) run(ctx context.Context) string {
	r.runs++
	r.arrived <- struct{}{}
	select {
	case <-r.release:
		return "answer"
	case <-ctx.Done():
		r.cancelled <- ctx.Err()
		return "cancelled"
	}
}

func start() (context.Context, context.CancelFunc, error) {
	ctx, cancel := Detached(context.Background(), time.Minute)
	return ctx, cancel, nil
}

// Callers of one key share one review and its answer.
func TestCallersShareOneReview(t *testing.T) {
	var g Flight[string]
	r := newReview()
	key := k("q")
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 3)
	for range 3 {
		go func() {
			v, err := g.Do(context.Background(), key, start, r.run)
			done <- result{v, err}
		}()
	}
	<-r.arrived
	waitfor.Until(t, "three waiters", func() bool { return g.Waiters(key) == 3 })
	close(r.release)
	for range 3 {
		if res := <-done; res.v != "answer" || res.err != nil {
			t.Errorf("caller got %q %v", res.v, res.err)
		}
	}
	if r.runs != 1 {
		t.Errorf("%d reviews, want 1", r.runs)
	}
	if n := g.Waiters(key); n != 0 {
		t.Errorf("%d waiters after the review", n)
	}
}

// The review's context is cancelled when its last caller leaves, not
// before; a caller after that starts a new review.
func TestLastWaiterLeavingCancelsTheReview(t *testing.T) {
	var g Flight[string]
	r := newReview()
	key := k("q")
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	go func() { _, err := g.Do(ctx1, key, start, r.run); errs <- err }()
	<-r.arrived
	go func() { _, err := g.Do(ctx2, key, start, r.run); errs <- err }()
	waitfor.Until(t, "two waiters", func() bool { return g.Waiters(key) == 2 })

	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	select {
	case err := <-r.cancelled:
		t.Fatalf("the review was cancelled (%v) while a caller still waits", err)
	default:
	}
	if n := g.Waiters(key); n != 1 {
		t.Errorf("%d waiters, want 1", n)
	}

	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Errorf("second caller: %v, want context.Canceled", err)
	}
	if err := <-r.cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("the review ended with %v, want context.Canceled", err)
	}

	// A later caller starts a new review and gets its answer.
	done := make(chan string)
	go func() {
		v, err := g.Do(context.Background(), key, start, r.run)
		if err != nil {
			t.Errorf("later caller: %v", err)
		}
		done <- v
	}()
	<-r.arrived
	close(r.release)
	if v := <-done; v != "answer" {
		t.Errorf("later caller got %q, want a new review's answer", v)
	}
	if r.runs != 2 {
		t.Errorf("%d reviews, want 2", r.runs)
	}
}

// A review that cannot start fails its caller with start's error and
// leaves nothing in flight.
func TestStartErrorStartsNoReview(t *testing.T) {
	var g Flight[string]
	runs := 0
	_, err := g.Do(context.Background(), k("q"), func() (context.Context, context.CancelFunc, error) {
		return nil, nil, errBusy
	}, func(context.Context) string { runs++; return "" })
	if !errors.Is(err, errBusy) || runs != 0 || g.Waiters(k("q")) != 0 {
		t.Errorf("err %v, %d runs, %d waiters", err, runs, g.Waiters(k("q")))
	}
}

// Detached keeps the caller's values, not its cancellation, and ends at
// its timeout.
func TestDetached(t *testing.T) {
	type ctxKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	ctx, stop := Detached(parent, 5*time.Second)
	defer stop()
	cancel()
	if ctx.Err() != nil || ctx.Value(ctxKey{}) != "v" {
		t.Errorf("detached: err %v, value %v", ctx.Err(), ctx.Value(ctxKey{}))
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 5*time.Second || time.Until(dl) <= 0 {
		t.Errorf("deadline %v %v, want within 5s", dl, ok)
	}
}
