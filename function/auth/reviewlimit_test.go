package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/token"
)

// pull sends GET /v2/auth with Basic user:pass asking pull on repos.
func (f *fixture) pull(ctx context.Context, user, pass string, repos ...string) answer {
	f.t.Helper()
	q := url.Values{}
	for _, r := range repos {
		q.Add("scope", "repository:"+r+":pull")
	}
	r := httptest.NewRequest(http.MethodGet, "http://registry.example/v2/auth?"+q.Encode(), nil)
	r.SetBasicAuth(user, pass)
	r.Header.Set("X-Forwarded-For", "192.0.2.10")
	return f.serve(ctx, r)
}

// granted are the repositories the access token of a 200 answer grants.
func (f *fixture) granted(a answer) []string {
	f.t.Helper()
	var resp response
	if err := json.Unmarshal([]byte(a.body), &resp); err != nil {
		f.t.Fatalf("token answer %q: %v", a.body, err)
	}
	claims, err := f.h.opts.Issuer.Keys.Verify(resp.Token, "registry.example", token.KindAccess, f.clock())
	if err != nil {
		f.t.Fatalf("issued token: %v", err)
	}
	var repos []string
	for _, s := range claims.Access {
		repos = append(repos, s.Name)
	}
	return repos
}

// Past an identity's burst of fresh image-stream reviews, its token
// requests that need one answer 429 TOOMANYREQUESTS with Retry-After and
// no SubjectAccessReview reaches the cluster; a cached scope is still
// granted; another user is unaffected; one WARN line names the user.
func TestImageStreamReviewsAreLimitedPerIdentity(t *testing.T) {
	f := newFixture(t, fixtureOptions{reviewRate: 0.5, reviewBurst: 20})
	f.cluster.AllowOn("alice", "ci", "tools")
	f.cluster.AllowOn("bob", "ci", "tools")
	ctx := context.Background()
	if a := f.pull(ctx, "alice", aliceToken, "ci/tools"); a.code != 200 || !slices.Equal(f.granted(a), []string{"ci/tools"}) {
		t.Fatalf("alice, ci/tools: %d %s", a.code, a.body)
	}
	// alice names image streams at random: 19 more reviews fit the burst.
	random := func(prefix string, n int) []string {
		var r []string
		for i := range n {
			r = append(r, fmt.Sprintf("%s/s%d", prefix, i))
		}
		return r
	}
	for _, req := range [][]string{random("a", 16), random("b", 3)} {
		if a := f.pull(ctx, "alice", aliceToken, req...); a.code != http.StatusForbidden {
			t.Fatalf("within the burst: %d %s, want 403", a.code, a.body)
		}
	}
	sars := len(f.cluster.SubjectAccessReviews())
	if sars != 20 {
		t.Fatalf("%d SubjectAccessReviews, want 20", sars)
	}
	for i := range 5 {
		a := f.pull(ctx, "alice", aliceToken, random(fmt.Sprint("c", i), 2)...)
		if a.code != http.StatusTooManyRequests || errorCode(t, a.body) != "TOOMANYREQUESTS" {
			t.Fatalf("past the burst: %d %s, want 429 TOOMANYREQUESTS", a.code, a.body)
		}
		if ra := a.hdr.Get("Retry-After"); ra != "4" {
			t.Errorf("Retry-After %q, want 4 (two reviews at 0.5/s)", ra)
		}
	}
	if n := len(f.cluster.SubjectAccessReviews()); n != sars {
		t.Errorf("%d SubjectAccessReviews past the limit, want 0", n-sars)
	}
	// The cached scope is still granted, without a review.
	if a := f.pull(ctx, "alice", aliceToken, "ci/tools"); a.code != 200 || !slices.Equal(f.granted(a), []string{"ci/tools"}) {
		t.Errorf("alice's cached ci/tools past the limit: %d %s", a.code, a.body)
	}
	// bob has his own bucket.
	if a := f.pull(ctx, "bob", bobToken, "ci/tools"); a.code != 200 || !slices.Equal(f.granted(a), []string{"ci/tools"}) {
		t.Errorf("bob: %d %s", a.code, a.body)
	}
	if n := len(f.cluster.SubjectAccessReviews()); n != sars+1 {
		t.Errorf("%d SubjectAccessReviews after bob's request, want %d", n, sars+1)
	}
	// One line, naming the cluster user; never a token.
	if n := f.lines("WARN", "image-stream review limit reached"); n != 1 {
		t.Errorf("%d limit lines, want 1:\n%s", n, f.logs)
	}
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(line, "image-stream review limit reached") && !strings.Contains(line, `"user":"alice"`) {
			t.Errorf("the limit line does not name alice: %s", line)
		}
	}
	if strings.Contains(f.logs.String(), aliceToken) {
		t.Error("a log line holds alice's token")
	}
	// Four seconds later two reviews fit again.
	f.step(4 * time.Second)
	if a := f.pull(ctx, "alice", aliceToken, random("d", 2)...); a.code != http.StatusForbidden {
		t.Errorf("after the refill: %d %s, want 403 (reviewed, denied)", a.code, a.body)
	}
	if n := len(f.cluster.SubjectAccessReviews()); n != sars+3 {
		t.Errorf("%d SubjectAccessReviews after the refill, want %d", n, sars+3)
	}
}
