package policy_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/test/waitfor"
)

// heldReviewer holds every review until release is closed or the review's
// context ends; it reports each review's arrival, and how each one that
// ended with its context ended, as a slow cluster would see its caller
// hang up.
type heldReviewer struct {
	arrived   chan struct{}
	release   chan struct{}
	cancelled chan error

	mu        sync.Mutex
	reviews   int
	deadlines []time.Duration // time left to each review when it began
}

func newHeldReviewer() *heldReviewer {
	return &heldReviewer{arrived: make(chan struct{}, 16), release: make(chan struct{}), cancelled: make(chan error, 16)}
}

func (r *heldReviewer) Review(ctx context.Context, _ login.Identity, _ policy.Resource) error {
	r.mu.Lock()
	r.reviews++
	if dl, ok := ctx.Deadline(); ok {
		r.deadlines = append(r.deadlines, time.Until(dl))
	} else {
		r.deadlines = append(r.deadlines, -1)
	}
	r.mu.Unlock()
	r.arrived <- struct{}{}
	select {
	case <-r.release:
		return nil
	case <-ctx.Done():
		r.cancelled <- ctx.Err()
		return errors.Join(login.ErrUnavailable, ctx.Err())
	}
}

func (r *heldReviewer) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reviews
}

// TestHungUpClientCancelsTheReview: two token requests asking the same
// question share one review; when the first client hangs up the review
// goes on for the second, and when the second hangs up too the review the
// cluster was answering is cancelled. Nothing is cached: the next request
// starts a new review.
func TestHungUpClientCancelsTheReview(t *testing.T) {
	rv := newHeldReviewer()
	p, _ := newPolicy(t, rv, nil)
	tools := policy.Resource{Namespace: "ci", Name: "tools"}
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel1()
	defer cancel2()
	decided := make(chan policy.Decision, 2)
	go func() { decided <- p.Decide(ctx1, alice, pulls("ci/tools"), false) }()
	<-rv.arrived
	go func() { decided <- p.Decide(ctx2, alice, pulls("ci/tools"), false) }()
	waitfor.Until(t, "the second request to join the review", func() bool { return p.Waiters(alice, tools) == 2 })

	cancel1()
	d := <-decided
	if len(d.Granted) != 0 || !errors.Is(d.Err, login.ErrUnavailable) || !errors.Is(d.Err, context.Canceled) {
		t.Errorf("first client's decision: granted %q, err %v; want nothing granted, unavailable (cancelled)", repos(d.Granted), d.Err)
	}
	select {
	case err := <-rv.cancelled:
		t.Fatalf("the review was cancelled (%v) while the second client still waits", err)
	default:
	}

	cancel2()
	<-decided
	select {
	case err := <-rv.cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the review ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the review was not cancelled after both clients hung up")
	}
	if n := rv.count(); n != 1 {
		t.Errorf("%d reviews for two requests of one question, want 1 shared", n)
	}

	// A later request starts a new review, answered this time.
	close(rv.release)
	d = p.Decide(context.Background(), alice, pulls("ci/tools"), false)
	if !slices.Equal(repos(d.Granted), []string{"ci/tools"}) || d.Err != nil {
		t.Errorf("later request: granted %q, err %v", repos(d.Granted), d.Err)
	}
	if n := rv.count(); n != 2 {
		t.Errorf("%d reviews, want 2 (the cancelled one was not cached)", n)
	}
}

// TestReviewTimeoutIsTheLogins: a review is bounded by the review timeout
// of a login (login.DefaultReviewTimeout), whoever waits for it, and by
// ReviewTimeout when set.
func TestReviewTimeoutIsTheLogins(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		want    time.Duration
	}{
		{"default", 0, login.DefaultReviewTimeout},
		{"set", 2 * time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rv := newHeldReviewer()
			close(rv.release)
			p, _ := newPolicy(t, rv, func(o *policy.Options) { o.ReviewTimeout = tc.timeout })
			// The caller itself would wait for an hour.
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			p.Decide(ctx, alice, pulls("ci/tools"), false)
			rv.mu.Lock()
			defer rv.mu.Unlock()
			if len(rv.deadlines) != 1 || rv.deadlines[0] <= 0 || rv.deadlines[0] > tc.want {
				t.Errorf("time left to the review: %v, want at most %v", rv.deadlines, tc.want)
			}
		})
	}
}
