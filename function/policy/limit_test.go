package policy_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/test/waitfor"
)

// streams are n pull scopes of distinct image streams named after prefix.
func streams(prefix string, n int) []registry.Scope {
	var s []registry.Scope
	for i := range n {
		s = append(s, registry.PullScope(fmt.Sprintf("%s/s%d", prefix, i)))
	}
	return s
}

// TestFreshReviewsAreLimitedPerIdentity: each review an identity sends to
// the cluster takes one from its bucket; past it the decision is Limited,
// says when to retry, and asks no further review; another identity, a
// cached answer and an open image are not limited; the first refusal
// since the bucket was full is Newly, the next ones are not.
func TestFreshReviewsAreLimitedPerIdentity(t *testing.T) {
	tools := policy.Resource{Namespace: "ci", Name: "tools"}
	rv := &reviewer{allow: map[string]bool{key("alice", tools): true}}
	p, c := newPolicy(t, rv, func(o *policy.Options) { o.ReviewRate, o.ReviewBurst = 1, 20 })
	ctx := context.Background()
	if d := p.Decide(ctx, alice, pulls("ci/tools"), false); len(d.Granted) != 1 {
		t.Fatalf("ci/tools: %+v", d)
	}
	// 19 tokens left: 16 and 3 more uncached reviews fit exactly.
	for _, req := range [][]registry.Scope{streams("a", 16), streams("b", 3)} {
		if d := p.Decide(ctx, alice, req, false); d.Limited != nil || len(d.Denied) != len(req) {
			t.Fatalf("within the burst: limited %v, denied %q", d.Limited, d.Denied)
		}
	}
	if n := rv.total(); n != 20 {
		t.Fatalf("%d reviews, want 20", n)
	}
	d := p.Decide(ctx, alice, streams("c", 1), false)
	if d.Limited == nil || !d.Limited.Newly || d.Limited.RetryAfter != time.Second || len(d.Granted)+len(d.Denied) != 0 || !d.Refused() {
		t.Fatalf("past the burst: %+v (limited %+v), want Limited, Newly, retry after 1s", d, d.Limited)
	}
	d = p.Decide(ctx, alice, streams("c", 2), false)
	if d.Limited == nil || d.Limited.Newly || d.Limited.RetryAfter != 2*time.Second {
		t.Errorf("again: limited %+v, want not Newly, retry after 2s", d.Limited)
	}
	if n := rv.total(); n != 20 {
		t.Errorf("%d reviews past the limit, want none (20 in all)", n)
	}
	// Never limited: cached answers (an allowed one, a denial) and open
	// images.
	d = p.Decide(ctx, alice, append(pulls("ci/tools", "ci/ci-operator", "ci-open/x"), streams("a", 1)...), false)
	if d.Limited != nil || !slices.Equal(repos(d.Granted), []string{"ci/tools", "ci/ci-operator", "ci-open/x"}) || !slices.Equal(d.Denied, []string{"a/s0"}) {
		t.Errorf("cached and open: limited %v, granted %q, denied %q", d.Limited, repos(d.Granted), d.Denied)
	}
	// A refresh asks afresh, so it is limited too.
	if d := p.Decide(ctx, alice, pulls("ci/tools"), true); d.Limited == nil {
		t.Errorf("a refresh past the limit was decided: %+v", d)
	}
	// Other identities have buckets of their own: another user, the same
	// name with another uid, the same user of another cluster.
	otherUID := alice
	otherUID.UID = "uid-alice-2"
	otherCluster := alice
	otherCluster.Cluster = "b"
	for _, id := range []login.Identity{{Name: "bob", UID: "uid-bob"}, otherUID, otherCluster} {
		if d := p.Decide(ctx, id, streams("d", 16), false); d.Limited != nil {
			t.Errorf("%+v is limited by alice's bucket", id)
		}
	}
	if n := rv.total(); n != 20+3*16 {
		t.Errorf("%d reviews, want %d", n, 20+3*16)
	}
	// A second later one token is back: of two fresh reviews, one is
	// asked (and cached for the retry), the other is not, and the
	// request is Limited.
	c.add(time.Second)
	before := rv.total()
	if d := p.Decide(ctx, alice, streams("e", 2), false); d.Limited == nil || d.Limited.RetryAfter != time.Second {
		t.Errorf("two reviews on one token: limited %+v, want retry after 1s", d.Limited)
	}
	if n := rv.total() - before; n != 1 {
		t.Errorf("%d reviews asked on one token, want 1", n)
	}
	c.add(time.Second)
	if d := p.Decide(ctx, alice, streams("e", 2), false); d.Limited != nil || len(d.Denied) != 2 {
		t.Errorf("the retry a second later: limited %v, denied %q", d.Limited, d.Denied)
	}
	if n := rv.total() - before; n != 2 {
		t.Errorf("%d reviews for e/s0 and e/s1 in all, want 2 (the first answer cached)", n)
	}
	// Refilled to the full burst, a new flood is reported anew.
	c.add(time.Minute)
	p.Decide(ctx, alice, streams("f", 16), false)
	p.Decide(ctx, alice, streams("g", 4), false)
	if d := p.Decide(ctx, alice, streams("h", 1), false); d.Limited == nil || !d.Limited.Newly {
		t.Errorf("after a refill, the next limit: %+v, want Newly", d.Limited)
	}
}

// TestBurstFitsEveryRequest: a burst below MaxScopes is raised to it, so
// that a request of MaxScopes image streams can be decided.
func TestBurstFitsEveryRequest(t *testing.T) {
	p, _ := newPolicy(t, &reviewer{}, func(o *policy.Options) { o.ReviewRate, o.ReviewBurst = 1, 1 })
	if d := p.Decide(context.Background(), alice, streams("a", policy.MaxScopes), false); d.Limited != nil {
		t.Errorf("MaxScopes image streams on a full bucket: %v", d.Limited)
	}
}

// TestFleetOfOneIdentitySharesReviews: many pods of one service account
// asking at once for an image stream not yet reviewed (a DaemonSet rolling
// out on a cold instance) join one review, which takes one token: none of
// them is limited, however many more than the burst they are.
func TestFleetOfOneIdentitySharesReviews(t *testing.T) {
	rv := newHeldReviewer()
	p, _ := newPolicy(t, rv, func(o *policy.Options) { o.ReviewRate, o.ReviewBurst = 1, policy.MaxScopes })
	tools := policy.Resource{Namespace: "ci", Name: "tools"}
	const pods = 3 * policy.MaxScopes
	decisions := make(chan policy.Decision, pods)
	for range pods {
		go func() { decisions <- p.Decide(context.Background(), alice, pulls("ci/tools"), false) }()
	}
	waitfor.Until(t, "every pod to join the review", func() bool { return p.Waiters(alice, tools) == pods })
	close(rv.release)
	for range pods {
		if d := <-decisions; d.Limited != nil || d.Err != nil {
			t.Fatalf("a pod of the fleet: limited %v, err %v", d.Limited, d.Err)
		}
	}
	if n := rv.count(); n != 1 {
		t.Errorf("%d reviews for %d pods, want 1", n, pods)
	}
}
