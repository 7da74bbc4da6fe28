package policy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/registry"
)

// reviewer allows the resources in allow (keyed by user and resource),
// fails those in fail, denies the rest, and counts the reviews it runs.
type reviewer struct {
	mu      sync.Mutex
	allow   map[string]bool
	fail    map[string]bool
	calls   map[string]int
	barrier *barrier
}

func key(user string, res policy.Resource) string { return user + " " + res.Namespace + "/" + res.Name }

func (r *reviewer) Review(ctx context.Context, id login.Identity, res policy.Resource) error {
	r.mu.Lock()
	if r.calls == nil {
		r.calls = map[string]int{}
	}
	r.calls[key(id.Name, res)]++
	allowed, failed, b := r.allow[key(id.Name, res)], r.fail[key(id.Name, res)], r.barrier
	r.mu.Unlock()
	if b != nil {
		if err := b.wait(ctx); err != nil {
			return fmt.Errorf("%w: %w", login.ErrUnavailable, err)
		}
	}
	switch {
	case failed:
		return fmt.Errorf("%w: test cluster down", login.ErrUnavailable)
	case allowed:
		return nil
	}
	return login.ErrDenied
}

func (r *reviewer) count(user string, res policy.Resource) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[key(user, res)]
}

func (r *reviewer) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		n += c
	}
	return n
}

// barrier lets its waiters go once n of them are waiting at once.
type barrier struct {
	mu      sync.Mutex
	n       int
	waiting int
	open    chan struct{}
}

func (b *barrier) wait(ctx context.Context) error {
	b.mu.Lock()
	b.waiting++
	if b.waiting == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var alice = login.Identity{Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated", "devs"},
	Extra: map[string][]string{"scopes.authorization.openshift.io": {"user:full"}}}

func pulls(repos ...string) []registry.Scope {
	var s []registry.Scope
	for _, r := range repos {
		s = append(s, registry.PullScope(r))
	}
	return s
}

func repos(scopes []registry.Scope) []string {
	var r []string
	for _, s := range scopes {
		if len(s.Actions) != 1 || s.Actions[0] != "pull" || s.Type != "repository" {
			panic("not a pull scope: " + s.String())
		}
		r = append(r, s.Name)
	}
	return r
}

func newPolicy(t *testing.T, rv policy.Reviewer, edit func(*policy.Options)) (*policy.Policy, *clock) {
	t.Helper()
	open, err := policy.ParseOpen([]string{"ci-open", "ci/ci-operator"})
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Unix(1_800_000_000, 0)}
	o := policy.Options{Upstream: "openshift/ci", Flat: true, FlatNamespace: "ocp", Open: open,
		Reviewer: rv, CacheTTL: 5 * time.Minute, Now: c.Now}
	if edit != nil {
		edit(&o)
	}
	return policy.New(o), c
}

func TestPullsAreTheServedPullScopes(t *testing.T) {
	p, _ := newPolicy(t, &reviewer{}, nil)
	req := registry.ParseScopes([]string{
		"repository:ci/ci-operator:pull repository:ci/ci-operator:pull,push",
		"repository:ocp/4.17:push",       // no pull
		"repository:a/b/c:pull",          // not served
		"repository:ci/ci_operator:pull", // not served (ambiguous name)
		"registry:catalog:*",             // not a repository
		"repository:openshift/ci:*",      // the upstream repository, "*"
		"repository:ocp/4.17:pull",
	})
	if got, want := p.Pulls(req), []string{"ci/ci-operator", "openshift/ci", "ocp/4.17"}; !slices.Equal(got, want) {
		t.Errorf("Pulls = %q, want %q", got, want)
	}
	var many []registry.Scope
	for i := range policy.MaxScopes + 5 {
		many = append(many, registry.PullScope(fmt.Sprintf("ns/s%d", i)))
	}
	if got := p.Pulls(many); len(got) != policy.MaxScopes {
		t.Errorf("%d pulls decided of %d asked; want at most %d", len(got), len(many), policy.MaxScopes)
	}
	if got := repos(p.Robot(req)); !slices.Equal(got, []string{"ci/ci-operator", "openshift/ci", "ocp/4.17"}) {
		t.Errorf("Robot = %q", got)
	}
}

// TestEachScopeIsDecidedOnItsOwn: one denied scope drops that scope only;
// each image stream is reviewed by its own name and namespace; the upstream
// repository by the namespace-wide review; open ones not at all.
func TestEachScopeIsDecidedOnItsOwn(t *testing.T) {
	rv := &reviewer{allow: map[string]bool{
		key("alice", policy.Resource{Namespace: "ci", Name: "ci-operator"}): false, // open anyway
		key("alice", policy.Resource{Namespace: "ocp", Name: "4.17"}):       true,
		key("alice", policy.Resource{Namespace: "ocp"}):                     true,
	}}
	p, _ := newPolicy(t, rv, nil)
	d := p.Decide(context.Background(), alice,
		pulls("ci/ci-operator", "ocp/4.17", "ocp-private/secret", "openshift/ci", "ci-open/anything"), false)
	if got := repos(d.Granted); !slices.Equal(got, []string{"ci/ci-operator", "ocp/4.17", "openshift/ci", "ci-open/anything"}) {
		t.Errorf("granted %q", got)
	}
	if !slices.Equal(d.Denied, []string{"ocp-private/secret"}) || d.Err != nil || d.Refused() {
		t.Errorf("denied %q, err %v, refused %v", d.Denied, d.Err, d.Refused())
	}
	if n := rv.count("alice", policy.Resource{Namespace: "ci", Name: "ci-operator"}); n != 0 {
		t.Errorf("an open image stream was reviewed %d times", n)
	}
	if n := rv.count("alice", policy.Resource{Namespace: "ci-open", Name: "anything"}); n != 0 {
		t.Errorf("an image stream of an open namespace was reviewed %d times", n)
	}
	if n := rv.count("alice", policy.Resource{Namespace: "ocp-private", Name: "secret"}); n != 1 {
		t.Errorf("ocp-private/secret reviewed %d times, want 1", n)
	}
	// open means that stream or namespace only, nothing more
	d = p.Decide(context.Background(), alice, pulls("ci/other", "ci-openx/a"), false)
	if len(d.Granted) != 0 || !d.Refused() {
		t.Errorf("open images opened %q", repos(d.Granted))
	}
}

func TestFlatRepositoryOff(t *testing.T) {
	rv := &reviewer{allow: map[string]bool{key("alice", policy.Resource{Namespace: "ocp"}): true}}
	p, _ := newPolicy(t, rv, func(o *policy.Options) { o.Flat = false })
	d := p.Decide(context.Background(), alice, pulls("openshift/ci"), false)
	if len(d.Granted) != 0 || !slices.Equal(d.Denied, []string{"openshift/ci"}) || !d.Refused() || rv.total() != 0 {
		t.Errorf("flat off: granted %q denied %q, %d reviews", repos(d.Granted), d.Denied, rv.total())
	}
	if msg := p.DeniedMessage("alice", d); !strings.Contains(msg, "openshift/ci") || !strings.Contains(msg, "<namespace>/<image stream>") {
		t.Errorf("message %q", msg)
	}
	if got := repos(p.Robot(pulls("openshift/ci"))); !slices.Equal(got, []string{"openshift/ci"}) {
		t.Errorf("the robot may pull everything, got %q", got)
	}
}

func TestDeniedMessageNamesRepositoriesAndPermission(t *testing.T) {
	p, _ := newPolicy(t, &reviewer{}, nil)
	d := p.Decide(context.Background(), alice, pulls("ocp-private/secret", "openshift/ci"), false)
	if !d.Refused() {
		t.Fatalf("not refused: %+v", d)
	}
	want := `authenticated as "alice", but not allowed to pull ocp-private/secret (needs get imagestreams/layers secret (group image.openshift.io) in namespace ocp-private), ` +
		"openshift/ci (needs get imagestreams/layers (group image.openshift.io) in namespace ocp)"
	if got := p.DeniedMessage("alice", d); got != want {
		t.Errorf("message\n%q\nwant\n%q", got, want)
	}
}

// TestReviewsAreCachedPerUserAndImageStream: one review per image stream,
// reused for the cache's lifetime (denials for 10 s), never for another
// user or another identity of the same name; a refresh (fresh) asks again.
func TestReviewsAreCachedPerUserAndImageStream(t *testing.T) {
	op := policy.Resource{Namespace: "ci", Name: "tools"}
	rv := &reviewer{allow: map[string]bool{key("alice", op): true}}
	p, c := newPolicy(t, rv, nil)
	ctx := context.Background()
	for range 3 {
		d := p.Decide(ctx, alice, pulls("ci/tools", "ocp-private/secret"), false)
		if !slices.Equal(repos(d.Granted), []string{"ci/tools"}) {
			t.Fatalf("granted %q", repos(d.Granted))
		}
	}
	secret := policy.Resource{Namespace: "ocp-private", Name: "secret"}
	if rv.count("alice", op) != 1 || rv.count("alice", secret) != 1 {
		t.Errorf("reviews: %d of ci/tools, %d of the secret; want 1 each", rv.count("alice", op), rv.count("alice", secret))
	}
	otherGroups := alice
	otherGroups.Groups = []string{"system:authenticated"}
	p.Decide(ctx, otherGroups, pulls("ci/tools"), false)
	if rv.count("alice", op) != 2 {
		t.Errorf("other groups reused alice's answer")
	}
	p.Decide(ctx, alice, pulls("ci/tools"), true)
	if rv.count("alice", op) != 3 {
		t.Errorf("a fresh decision did not review again")
	}
	c.add(11 * time.Second) // the denial expires, the allowed answer stays
	p.Decide(ctx, alice, pulls("ci/tools", "ocp-private/secret"), false)
	if rv.count("alice", op) != 3 || rv.count("alice", secret) != 2 {
		t.Errorf("after 11s: %d, %d reviews", rv.count("alice", op), rv.count("alice", secret))
	}
	c.add(5 * time.Minute)
	p.Decide(ctx, alice, pulls("ci/tools"), false)
	if rv.count("alice", op) != 4 {
		t.Errorf("an allowed answer outlived the cache TTL")
	}
}

// TestFailuresAreNotCachedNorDenials: a review that fails leaves its scope
// undecided (neither granted nor denied) and is asked again next time.
func TestFailuresAreNotCachedNorDenials(t *testing.T) {
	res := policy.Resource{Namespace: "ci", Name: "tools"}
	rv := &reviewer{fail: map[string]bool{key("alice", res): true},
		allow: map[string]bool{key("alice", policy.Resource{Namespace: "ocp", Name: "x"}): true}}
	p, _ := newPolicy(t, rv, nil)
	d := p.Decide(context.Background(), alice, pulls("ci/tools", "ocp/x"), false)
	if !errors.Is(d.Err, login.ErrUnavailable) || len(d.Denied) != 0 || !slices.Equal(repos(d.Granted), []string{"ocp/x"}) {
		t.Errorf("decision %+v", d)
	}
	p.Decide(context.Background(), alice, pulls("ci/tools"), false)
	if rv.count("alice", res) != 2 {
		t.Errorf("a failure was cached: %d reviews", rv.count("alice", res))
	}
}

// TestReviewsRunConcurrently: the reviews of one request are all in flight
// at once (the barrier lets none go until all three wait).
func TestReviewsRunConcurrently(t *testing.T) {
	rv := &reviewer{barrier: &barrier{n: 3, open: make(chan struct{})}, allow: map[string]bool{
		key("alice", policy.Resource{Namespace: "a", Name: "x"}): true,
		key("alice", policy.Resource{Namespace: "b", Name: "y"}): true,
		key("alice", policy.Resource{Namespace: "c", Name: "z"}): true,
	}}
	p, _ := newPolicy(t, rv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := p.Decide(ctx, alice, pulls("a/x", "b/y", "c/z"), false)
	if len(d.Granted) != 3 || d.Err != nil {
		t.Errorf("decision %+v: the reviews did not run at once", d)
	}
}

func TestParseOpen(t *testing.T) {
	o, err := policy.ParseOpen([]string{"ci", "ocp/release"})
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[registry.ImageStream]bool{
		{Namespace: "ci", Name: "anything"}:  true,
		{Namespace: "ocp", Name: "release"}:  true,
		{Namespace: "ocp", Name: "release2"}: false,
		{Namespace: "cix", Name: "a"}:        false,
	} {
		if o.Allows(s) != want {
			t.Errorf("Allows(%+v) = %v", s, !want)
		}
	}
	_, err = policy.ParseOpen([]string{"Ci", "a/b/c", "ok", "", "ci/a_b"})
	var oe *policy.OpenError
	if !errors.As(err, &oe) {
		t.Fatalf("ParseOpen of bad entries: %v, want an *OpenError", err)
	}
	// Every bad entry, the empty one too, in order; never a good one.
	var named []string
	for _, p := range oe.Problems {
		e, _, _ := strings.Cut(strings.TrimPrefix(p, `"`), `"`)
		named = append(named, e)
	}
	if want := []string{"Ci", "a/b/c", "", "ci/a_b"}; !slices.Equal(named, want) {
		t.Errorf("problems %q name %q, want %q", oe.Problems, named, want)
	}
	if (policy.Open{}).Allows(registry.ImageStream{Namespace: "ci", Name: "x"}) {
		t.Error("the zero Open opens something")
	}
}

// TestDenialsNeverEvictAllowedAnswers: a user asking for thousands of image
// streams they may not pull does not push anyone's allowed answer out.
func TestDenialsNeverEvictAllowedAnswers(t *testing.T) {
	tools := policy.Resource{Namespace: "ci", Name: "tools"}
	rv := &reviewer{allow: map[string]bool{key("alice", tools): true}}
	// mallory's limit of fresh reviews is off: this is about the cache.
	p, _ := newPolicy(t, rv, func(o *policy.Options) { o.ReviewBurst = 1 << 20 })
	ctx := context.Background()
	p.Decide(ctx, alice, pulls("ci/tools"), false)
	mallory := login.Identity{Name: "mallory"}
	for i := range 5000 / policy.MaxScopes {
		var req []registry.Scope
		for j := range policy.MaxScopes {
			req = append(req, registry.PullScope(fmt.Sprintf("ns%d/s%d", i, j)))
		}
		if d := p.Decide(ctx, mallory, req, false); len(d.Granted) != 0 || d.Limited != nil {
			t.Fatalf("granted %q, limited %v", repos(d.Granted), d.Limited)
		}
	}
	if d := p.Decide(ctx, alice, pulls("ci/tools"), false); len(d.Granted) != 1 || rv.count("alice", tools) != 1 {
		t.Errorf("after 5000 denials: granted %q, %d reviews of ci/tools; want the cached answer", repos(d.Granted), rv.count("alice", tools))
	}
}

// clusterReviewer allows what allow lists, keyed by cluster, user and
// resource, denies the rest, and records each review so.
type clusterReviewer struct {
	mu    sync.Mutex
	allow map[string]bool
	asked []string
}

func clusterKey(id login.Identity, res policy.Resource) string {
	return id.Cluster + " " + key(id.Name, res)
}

func (r *clusterReviewer) Review(_ context.Context, id login.Identity, res policy.Resource) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := clusterKey(id, res)
	r.asked = append(r.asked, k)
	if r.allow[k] {
		return nil
	}
	return login.ErrDenied
}

func (r *clusterReviewer) reviews() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.asked)
}

// TestImageStreamClustersAreDecidedPerImageStream: a user of a cluster of
// ImageStreamClusters is decided as a single cluster's, the upstream
// repository by a review in that cluster's own namespace; two clusters'
// users of one name never share a cached answer; a user of a cluster that
// authorized at login is not decided per image stream.
func TestImageStreamClustersAreDecidedPerImageStream(t *testing.T) {
	tools := policy.Resource{Namespace: "ci", Name: "tools"}
	aliceOfB, aliceOfC := alice, alice
	aliceOfB.Cluster, aliceOfC.Cluster = "b", "c"
	rv := &clusterReviewer{allow: map[string]bool{
		clusterKey(aliceOfB, tools):                                 true,
		clusterKey(aliceOfB, policy.Resource{Namespace: "ci-pull"}): true,
	}}
	p, _ := newPolicy(t, rv, func(o *policy.Options) {
		o.ImageStreamClusters = map[string]string{"b": "ci-pull", "c": "ocp"}
	})
	for cluster, want := range map[string]bool{"": true, "b": true, "c": true, "a": false} {
		if got := p.PerImageStream(cluster); got != want {
			t.Errorf("PerImageStream(%q) = %v, want %v", cluster, got, want)
		}
	}
	ctx := context.Background()
	d := p.Decide(ctx, aliceOfB, pulls("ci/tools", "openshift/ci", "ocp-private/secret"), false)
	if got := repos(d.Granted); !slices.Equal(got, []string{"ci/tools", "openshift/ci"}) || !slices.Equal(d.Denied, []string{"ocp-private/secret"}) {
		t.Errorf("alice of b: granted %q, denied %q", got, d.Denied)
	}
	want := []string{
		clusterKey(aliceOfB, tools),
		clusterKey(aliceOfB, policy.Resource{Namespace: "ci-pull"}),
		clusterKey(aliceOfB, policy.Resource{Namespace: "ocp-private", Name: "secret"}),
	}
	if got := rv.reviews(); !slices.Equal(sorted(got), sorted(want)) {
		t.Errorf("reviews %q, want %q", got, want)
	}
	// alice of c is someone else: her own reviews, at her own cluster.
	d = p.Decide(ctx, aliceOfC, pulls("ci/tools", "openshift/ci"), false)
	if len(d.Granted) != 0 || !d.Refused() {
		t.Errorf("alice of c got alice of b's answers: granted %q", repos(d.Granted))
	}
	wantMsg := `authenticated as "alice", but not allowed to pull ci/tools (needs get imagestreams/layers tools (group image.openshift.io) in namespace ci), ` +
		"openshift/ci (needs get imagestreams/layers (group image.openshift.io) in namespace ocp)"
	if got := p.DeniedMessage("alice", d); got != wantMsg {
		t.Errorf("message\n%q\nwant\n%q", got, wantMsg)
	}
	if got := rv.reviews()[3:]; !slices.Equal(sorted(got), sorted([]string{
		clusterKey(aliceOfC, tools), clusterKey(aliceOfC, policy.Resource{Namespace: "ocp"})})) {
		t.Errorf("alice of c's reviews %q", got)
	}
	// b's upstream-repository denial names b's namespace.
	bob := login.Identity{Name: "bob", Cluster: "b"}
	d = p.Decide(ctx, bob, pulls("openshift/ci"), false)
	if got, want := p.DeniedMessage("bob", d), `authenticated as "bob", but not allowed to pull openshift/ci (needs get imagestreams/layers (group image.openshift.io) in namespace ci-pull)`; got != want {
		t.Errorf("message\n%q\nwant\n%q", got, want)
	}
	// A cluster that is not one of ImageStreamClusters has no upstream
	// review here.
	n := len(rv.reviews())
	d = p.Decide(ctx, login.Identity{Name: "carol", Cluster: "a"}, pulls("openshift/ci"), false)
	if len(d.Granted) != 0 || len(rv.reviews()) != n {
		t.Errorf("a user of cluster a: granted %q after %d reviews", repos(d.Granted), len(rv.reviews())-n)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
