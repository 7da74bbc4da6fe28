package auth

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/loginlimit"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/requestinfo"
	"github.com/qci-appci/qci-appci/function/token"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/logbuffer"
)

const (
	repo       = "openshift/ci"
	robotUser  = "openshift+ci_robot"
	robotPass  = "robot-password-upstream"
	aliceToken = "sha256~alice-cluster-token"
	bobToken   = "sha256~bob-cluster-token"
	carolToken = "sha256~carol-cluster-token"
)

// fixture is the token endpoint with a real cluster login against the
// clustertest API server, a failed-login limit on a stepped clock, and its
// logs.
type fixture struct {
	t       *testing.T
	h       *Handler
	cluster *clustertest.Server
	logs    *logbuffer.Buffer

	mu  sync.Mutex
	now time.Time
}

type fixtureOptions struct {
	rate       float64
	burst      int
	maxReviews int
	// reviewRate and reviewBurst limit fresh image-stream reviews per
	// identity; zero: the policy's defaults.
	reviewRate  float64
	reviewBurst int
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	cl, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	for _, u := range []struct{ tok, name string }{{aliceToken, "alice"}, {bobToken, "bob"}, {carolToken, "carol"}} {
		cl.AddToken(u.tok, clustertest.User{Name: u.name, UID: "uid-" + u.name, Groups: []string{"system:authenticated"}})
	}
	cl.Allow("alice")
	cl.Allow("carol")
	kc, err := cl.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, cluster: cl, logs: &logbuffer.Buffer{}, now: time.Unix(1_700_000_000, 0)}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	keys, err := token.NewKeys([][]byte{[]byte("0123456789abcdef0123456789abcdef")}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	public, err := publicurl.New("")
	if err != nil {
		t.Fatal(err)
	}
	cluster := login.NewCluster(login.ClusterOptions{
		Kubeconfig: kc, CacheTTL: time.Minute, MaxReviews: o.maxReviews, Logger: log, Now: f.clock,
	})
	opts := Options{
		Policy: policy.New(policy.Options{Upstream: repo, Flat: true, FlatNamespace: "ocp",
			Reviewer: policy.ReviewFunc(cluster.ReviewImageStream), CacheTTL: time.Minute, Now: f.clock,
			ReviewRate: o.reviewRate, ReviewBurst: o.reviewBurst}),
		Robot:          login.NewRobot(robotUser, robotPass),
		Cluster:        cluster,
		Issuer:         &token.Issuer{Keys: keys, AccessTTL: time.Hour, RefreshTTL: 24 * time.Hour},
		Public:         public,
		Logger:         log,
		Now:            f.clock,
		ClientIPHeader: "X-Forwarded-For",
	}
	if o.rate > 0 {
		opts.Limiter, err = loginlimit.New(loginlimit.Options{Rate: o.rate, Burst: o.burst})
		if err != nil {
			t.Fatal(err)
		}
	}
	f.h = New(opts)
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) step(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

type answer struct {
	code int
	hdr  http.Header
	body string
	user string // what the access line would name
}

// login sends GET /v2/auth with Basic user:pass from client (through the
// trusted X-Forwarded-For), as the access log middleware would see it.
func (f *fixture) login(ctx context.Context, client, user, pass string) answer {
	f.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://registry.example/v2/auth?scope=repository:"+repo+":pull", nil)
	r.SetBasicAuth(user, pass)
	r.Header.Set("X-Forwarded-For", client)
	return f.serve(ctx, r)
}

func (f *fixture) serve(ctx context.Context, r *http.Request) answer {
	ctx, info := requestinfo.With(ctx)
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r.WithContext(ctx))
	return answer{code: w.Code, hdr: w.Header(), body: w.Body.String(), user: info.User}
}

func (f *fixture) lines(level, msg string) int {
	n := 0
	for _, line := range strings.Split(f.logs.String(), "\n") {
		if strings.Contains(line, `"level":"`+level+`"`) && strings.Contains(line, msg) {
			n++
		}
	}
	return n
}

func errorCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("not a registry error: %q", body)
	}
	return e.Errors[0].Code
}

// Past the limit, a login that needs a review answers 429 with
// Retry-After before any review; a successful robot login and a cached
// allowed cluster login are never slowed; one line says the client became
// limited.
func TestFailedLoginsAreLimitedBeforeAnyReview(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 0.5, burst: 3})
	ctx := context.Background()
	const attacker = "203.0.113.66"
	if a := f.login(ctx, attacker, "alice", aliceToken); a.code != 200 {
		t.Fatalf("alice: %d %s", a.code, a.body)
	}
	for i := range 3 {
		if a := f.login(ctx, attacker, "x"+string(rune('a'+i)), "sha256~bogus-"+string(rune('a'+i))); a.code != 401 {
			t.Fatalf("bogus %d: %d %s", i, a.code, a.body)
		}
	}
	reviews := f.cluster.TokenReviewCount()
	for i := range 20 {
		a := f.login(ctx, attacker, "y"+string(rune('a'+i)), "sha256~more-bogus-"+string(rune('a'+i)))
		if a.code != http.StatusTooManyRequests || errorCode(t, a.body) != "TOOMANYREQUESTS" {
			t.Fatalf("past the limit: %d %s, want 429 TOOMANYREQUESTS", a.code, a.body)
		}
		if ra := a.hdr.Get("Retry-After"); ra != "2" {
			t.Errorf("Retry-After %q, want 2 (one token at 0.5/s)", ra)
		}
		if a.user != "" {
			t.Errorf("a refused login names %q in the access line", a.user)
		}
	}
	// A valid token that needs a review is refused too, from that address.
	if a := f.login(ctx, attacker, "carol", carolToken); a.code != http.StatusTooManyRequests {
		t.Errorf("carol's uncached login from the limited address: %d, want 429", a.code)
	}
	if n := f.cluster.TokenReviewCount() - reviews; n != 0 {
		t.Errorf("%d TokenReviews past the limit, want 0", n)
	}
	// Never slowed: the robot, and alice's cached allowed login.
	if a := f.login(ctx, attacker, robotUser, robotPass); a.code != 200 || a.user != robotUser {
		t.Errorf("robot from the limited address: %d %q", a.code, a.user)
	}
	if a := f.login(ctx, attacker, "alice", aliceToken); a.code != 200 || a.user != "alice" {
		t.Errorf("alice (cached) from the limited address: %d %q", a.code, a.user)
	}
	// Other addresses are not limited.
	if a := f.login(ctx, "198.51.100.7", "carol", carolToken); a.code != 200 {
		t.Errorf("carol from another address: %d %s", a.code, a.body)
	}
	if n := f.lines("WARN", "failed-login limit reached"); n != 1 {
		t.Errorf("%d limit lines, want 1 (for the address):\n%s", n, f.logs)
	}
	// Two seconds later one failure is allowed again.
	f.step(2 * time.Second)
	if a := f.login(ctx, attacker, "carol", carolToken); a.code != 200 {
		t.Errorf("carol after the refill: %d %s", a.code, a.body)
	}
}

// A cluster login is limited by its address alone, never by the username
// it came with: that name means nothing and may be shared by a whole fleet.
func TestClusterLoginsAreNotLimitedPerUsername(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 0.5, burst: 2})
	ctx := context.Background()
	// Every kubelet of qci-credential-provider sends this name: guesses
	// under it from other addresses must not lock the fleet out.
	for i := range 3 {
		if a := f.login(ctx, "192.0.2."+string(rune('1'+i)), "serviceaccount", "sha256~guess-"+string(rune('a'+i))); a.code != 401 {
			t.Errorf("guess %d for serviceaccount from a new address: %d, want 401 (limited per address only)", i, a.code)
		}
	}
	if a := f.login(ctx, "192.0.2.9", "serviceaccount", carolToken); a.code != 200 {
		t.Errorf("a valid token under the guessed name from a fourth address: %d, want 200", a.code)
	}
	// The address still limits: its third failure in a row is refused.
	for i := range 3 {
		a := f.login(ctx, "192.0.2.8", "u"+string(rune('a'+i)), "sha256~other-"+string(rune('a'+i)))
		if want := []int{401, 401, 429}[i]; a.code != want {
			t.Errorf("guess %d from one address: %d, want %d", i, a.code, want)
		}
	}
}

// The limit counts the peer, not X-Forwarded-For, when no header is
// trusted: a client cannot spread itself over made-up addresses.
func TestUntrustedForwardedForIsIgnored(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 0.5, burst: 2})
	f.h.opts.ClientIPHeader = ""
	ctx := context.Background()
	for i := range 3 {
		a := f.login(ctx, "192.0.2."+string(rune('1'+i)), "u"+string(rune('a'+i)), "sha256~guess-"+string(rune('a'+i)))
		if want := []int{401, 401, 429}[i]; a.code != want {
			t.Errorf("guess %d with a new X-Forwarded-For: %d, want %d", i, a.code, want)
		}
	}
}

// Names that differ from the robot's only in case or by '+' decoded to a
// space are the robot's: a wrong password is 401 and is never sent to the
// cluster. The robot's password under any other name is refused without a
// review too.
func TestRobotPasswordNeverReachesTheCluster(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	for _, c := range []struct{ user, pass string }{
		{"OpenShift+CI_Robot", "sha256~some-token"},
		{"OPENSHIFT+CI_ROBOT", robotPass},
		{"alice", robotPass},
		{"unused", robotPass},
	} {
		if a := f.login(ctx, "192.0.2.1", c.user, c.pass); a.code != 401 || a.user != "" {
			t.Errorf("%s: %d user=%q, want 401 naming no one", c.user, a.code, a.user)
		}
	}
	// A form whose '+' was not escaped decodes to a space.
	r := httptest.NewRequest(http.MethodPost, "http://registry.example/v2/auth",
		strings.NewReader("grant_type=password&username=openshift+ci_robot&password="+url.QueryEscape(robotPass)))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := f.serve(ctx, r); a.code != 401 {
		t.Errorf("robot name with '+' as a space: %d %s, want 401", a.code, a.body)
	}
	if n := f.cluster.TokenReviewCount(); n != 0 {
		t.Errorf("%d TokenReviews reached the cluster, want 0", n)
	}
	if a := f.login(ctx, "192.0.2.1", robotUser, robotPass); a.code != 200 {
		t.Errorf("the robot itself: %d %s", a.code, a.body)
	}
}

// An empty password is a wrong credential (401), not an outage, and never
// reaches the cluster.
func TestEmptyPasswordIsWrongCredentials(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	a := f.login(context.Background(), "192.0.2.1", "bob", "")
	if a.code != 401 || a.hdr.Get("WWW-Authenticate") == "" {
		t.Errorf("bob with an empty password: %d %v, want 401 with a Basic challenge", a.code, a.hdr)
	}
	if n := f.cluster.TokenReviewCount(); n != 0 {
		t.Errorf("%d TokenReviews, want 0", n)
	}
	if f.lines("ERROR", "") != 0 || f.lines("WARN", "login failed: wrong credentials") != 1 {
		t.Errorf("want one WARN line and no ERROR:\n%s", f.logs)
	}
}

// A cluster that rejects the review request (400) is not an outage.
func TestClusterBadRequestIsWrongCredentials(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.cluster.FailReviews(http.StatusBadRequest)
	if a := f.login(context.Background(), "192.0.2.1", "bob", bobToken); a.code != 401 {
		t.Errorf("review answered 400: %d %s, want 401", a.code, a.body)
	}
	if f.lines("ERROR", "") != 0 {
		t.Errorf("a 400 was logged at ERROR:\n%s", f.logs)
	}
}

// The 403 says which permission is missing where; the denial is a WARN.
func TestDeniedNamesNamespaceAndPermission(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	a := f.login(context.Background(), "192.0.2.1", "bob", bobToken)
	if a.code != 403 || errorCode(t, a.body) != "DENIED" {
		t.Fatalf("bob: %d %s", a.code, a.body)
	}
	for _, want := range []string{`\"bob\"`, "get imagestreams/layers", "group image.openshift.io", "namespace ocp"} {
		if !strings.Contains(a.body, want) {
			t.Errorf("403 message %s does not name %s", a.body, want)
		}
	}
	if a.user != "" {
		t.Errorf("a denied login names %q in the access line", a.user)
	}
	if f.lines("WARN", "login denied") != 1 {
		t.Errorf("denial not logged at WARN:\n%s", f.logs)
	}
}

// An evaluationError is 503 with Retry-After.
func TestEvaluationErrorIs503(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.cluster.SetEvaluationError("authorizer webhook unreachable")
	a := f.login(context.Background(), "192.0.2.1", "bob", bobToken)
	if a.code != 503 || a.hdr.Get("Retry-After") == "" {
		t.Errorf("evaluation error: %d Retry-After=%q, want 503 with Retry-After", a.code, a.hdr.Get("Retry-After"))
	}
}

// Past the cap on reviews in flight: a fast 503 with Retry-After.
func TestReviewCapIs503(t *testing.T) {
	f := newFixture(t, fixtureOptions{maxReviews: 1})
	arrived, release := f.cluster.HoldReviews()
	defer release()
	done := make(chan answer)
	go func() { done <- f.login(context.Background(), "192.0.2.1", "alice", aliceToken) }()
	<-arrived
	a := f.login(context.Background(), "192.0.2.2", "carol", carolToken)
	if a.code != 503 || a.hdr.Get("Retry-After") == "" || errorCode(t, a.body) != "UNAVAILABLE" {
		t.Errorf("past the cap: %d %v %s", a.code, a.hdr, a.body)
	}
	release()
	if a := <-done; a.code != 200 {
		t.Errorf("alice: %d %s", a.code, a.body)
	}
}

// A client that hangs up during its login is not an outage.
func TestHungUpClientIsNotAnOutage(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	arrived, release := f.cluster.HoldReviews()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan answer)
	go func() { done <- f.login(ctx, "192.0.2.1", "alice", aliceToken) }()
	<-arrived
	cancel()
	<-done
	if n := f.lines("ERROR", ""); n != 0 {
		t.Errorf("a hung-up client was logged at ERROR:\n%s", f.logs)
	}
	if f.lines("INFO", "login abandoned") != 1 {
		t.Errorf("no line says the client went away:\n%s", f.logs)
	}
}

// The access line names the user of a successful login only.
func TestAccessLineNamesOnlyAuthenticatedUsers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ctx := context.Background()
	if a := f.login(ctx, "192.0.2.1", robotUser, "wrong"); a.code != 401 || a.user != "" {
		t.Errorf("wrong robot password: %d user=%q, want 401 naming no one", a.code, a.user)
	}
	if a := f.login(ctx, "192.0.2.1", "mallory", "sha256~unknown"); a.code != 401 || a.user != "" {
		t.Errorf("unknown token: %d user=%q", a.code, a.user)
	}
	if a := f.login(ctx, "192.0.2.1", "whatever", aliceToken); a.code != 200 || a.user != "alice" {
		t.Errorf("alice: %d user=%q, want the cluster user", a.code, a.user)
	}
	if f.lines("WARN", "login failed") != 2 {
		t.Errorf("failed logins not logged at WARN:\n%s", f.logs)
	}
	// The TokenReview's status.error says why the token was refused.
	if f.lines("WARN", "token lookup failed") != 1 {
		t.Errorf("the TokenReview's status.error is not in the failed login's line:\n%s", f.logs)
	}
}

// Logins whose reviews are in flight count against the limit: ten bogus
// logins at once from one address with a burst of 2 send two reviews, not
// ten.
func TestConcurrentFailuresCannotOverspendTheLimit(t *testing.T) {
	f := newFixture(t, fixtureOptions{rate: 0.5, burst: 2})
	arrived, release := f.cluster.HoldReviews()
	defer release()
	ctx := context.Background()
	held := make(chan answer, 2)
	for i := range 2 {
		go func() {
			held <- f.login(ctx, "203.0.113.5", "h"+string(rune('a'+i)), "sha256~held-"+string(rune('a'+i)))
		}()
		<-arrived
	}
	for i := range 8 {
		a := f.login(ctx, "203.0.113.5", "c"+string(rune('a'+i)), "sha256~concurrent-"+string(rune('a'+i)))
		if a.code != http.StatusTooManyRequests {
			t.Errorf("login %d while two reviews are in flight: %d, want 429", i, a.code)
		}
	}
	release()
	for range 2 {
		if a := <-held; a.code != 401 {
			t.Errorf("held bogus login: %d, want 401", a.code)
		}
	}
	if n := f.cluster.TokenReviewCount(); n != 2 {
		t.Errorf("%d TokenReviews, want 2", n)
	}
}
