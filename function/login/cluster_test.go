package login

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/reviewcache"
	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/logbuffer"
)

const (
	aliceToken = "sha256~alice-cluster-token"
	bobToken   = "sha256~bob-cluster-token"
)

type fixture struct {
	cl   *clustertest.Server
	c    *Cluster
	logs *logbuffer.Buffer
}

func newFixture(t *testing.T, opts ClusterOptions) *fixture {
	t.Helper()
	cl, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cl.AddToken(aliceToken, clustertest.User{Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated"}})
	cl.AddToken(bobToken, clustertest.User{Name: "bob", UID: "uid-bob", Groups: []string{"system:authenticated"}})
	cl.Allow("alice")
	kc, err := cl.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := &logbuffer.Buffer{}
	opts.Kubeconfig = kc
	opts.Namespace = "ocp"
	if opts.CacheTTL == 0 {
		opts.CacheTTL = time.Minute
	}
	opts.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return &fixture{cl: cl, c: NewCluster(opts), logs: logs}
}

func TestClusterLoginAllowedDeniedUnknown(t *testing.T) {
	f := newFixture(t, ClusterOptions{})
	ctx := context.Background()
	id, err := f.c.Login(ctx, aliceToken)
	if err != nil || id.Name != "alice" {
		t.Fatalf("alice: %+v %v", id, err)
	}
	_, err = f.c.Login(ctx, bobToken)
	var denied *DeniedError
	if !errors.Is(err, ErrDenied) || !errors.As(err, &denied) || denied.Namespace != "ocp" || denied.User != "bob" {
		t.Errorf("bob: %v, want a DeniedError for bob in ocp", err)
	}
	// A token the cluster does not authenticate is a wrong credential,
	// and the error carries the TokenReview's status.error.
	_, err = f.c.Login(ctx, "sha256~unknown")
	if !errors.Is(err, ErrBadCredentials) || !strings.Contains(err.Error(), "token lookup failed") {
		t.Errorf("unknown token: %v, want ErrBadCredentials with status.error", err)
	}
	if strings.Contains(f.logs.String(), `"level":"ERROR"`) {
		t.Errorf("wrong credentials logged at ERROR:\n%s", f.logs)
	}
}

func TestImplausibleTokensNeverReachTheCluster(t *testing.T) {
	f := newFixture(t, ClusterOptions{})
	for _, tok := range []string{"", strings.Repeat("a", MaxTokenBytes+1), "two words", "bad\x00byte", "pass:word", "p\u00e4ss"} {
		_, err := f.c.Login(context.Background(), tok)
		if !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Login(%.20q) = %v, want ErrBadCredentials", tok, err)
		}
	}
	if n := f.cl.TokenReviewCount(); n != 0 {
		t.Errorf("%d TokenReviews reached the cluster, want 0", n)
	}
}

// However many refusals are cached, an allowed login stays cached: the
// two live in separate LRUs, and a full one drops its oldest entry only.
func TestDenialsNeverEvictAllowedLogins(t *testing.T) {
	c := reviewcache.New[Answer](4, 8)
	now := time.Unix(1_700_000_000, 0)
	keyOf := func(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }
	for i := range 4 {
		c.AddAllowed(keyOf(fmt.Sprint("user", i)), Answer{Identity: Identity{Name: fmt.Sprint("user", i)}}, now.Add(time.Minute))
	}
	for i := range 1000 {
		c.AddDenied(keyOf(fmt.Sprint("bogus", i)), Answer{Err: ErrBadCredentials}, now.Add(10*time.Second))
	}
	for i := range 4 {
		a, ok := c.Get(keyOf(fmt.Sprint("user", i)), now)
		if !ok || a.Err != nil || a.Identity.Name != fmt.Sprint("user", i) {
			t.Errorf("user%d after 1000 denials: %+v %v", i, a, ok)
		}
	}
	allowed, denied := c.Len()
	if allowed != 4 || denied != 8 {
		t.Errorf("cache holds %d allowed, %d denied; want 4, 8 (bounded, not emptied)", allowed, denied)
	}
	// The newest denials are the ones kept: the LRU dropped the oldest.
	if _, ok := c.Get(keyOf("bogus999"), now); !ok {
		t.Error("the newest denial is not cached")
	}
	if _, ok := c.Get(keyOf("bogus0"), now); ok {
		t.Error("the oldest denial is still cached past the bound")
	}
	// A fifth allowed login evicts the least recently used allowed one only.
	c.AddAllowed(keyOf("user4"), Answer{Identity: Identity{Name: "user4"}}, now.Add(time.Minute))
	if allowed, _ := c.Len(); allowed != 4 {
		t.Errorf("allowed cache holds %d, want 4", allowed)
	}
	// Expired entries are not answered.
	if _, ok := c.Get(keyOf("user1"), now.Add(time.Hour)); ok {
		t.Error("an expired allowed entry was answered")
	}
}

// Through the cluster too: a flood of bogus tokens leaves alice's cached
// login in place, so she causes no second review.
func TestBogusFloodKeepsAllowedLoginCached(t *testing.T) {
	f := newFixture(t, ClusterOptions{})
	f.c.cache = reviewcache.New[Answer](16, 16)
	ctx := context.Background()
	if _, err := f.c.Login(ctx, aliceToken); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := f.c.Login(ctx, fmt.Sprintf("sha256~bogus-%d", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("bogus %d: %v", i, err)
		}
	}
	before := f.cl.TokenReviewCount()
	if id, err := f.c.Login(ctx, aliceToken); err != nil || id.Name != "alice" {
		t.Fatalf("alice after the flood: %+v %v", id, err)
	}
	if n := f.cl.TokenReviewCount() - before; n != 0 {
		t.Errorf("alice's login after the flood caused %d TokenReviews, want 0 (cached)", n)
	}
	if _, ok := f.c.Cached(aliceToken); !ok {
		t.Error("Cached(alice) = false after the flood")
	}
}

// Past MaxReviews in flight, a login that needs a review fails at once
// with ErrBusy; a login that shares a review in flight still joins it.
func TestReviewsInFlightAreCapped(t *testing.T) {
	f := newFixture(t, ClusterOptions{MaxReviews: 2})
	arrived, release := f.cl.HoldReviews()
	defer release()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, tok := range []string{aliceToken, "sha256~bogus-1", aliceToken} {
		if i == 2 {
			<-arrived
			<-arrived
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.c.Login(ctx, tok)
		}()
	}
	start := time.Now()
	_, err := f.c.Login(ctx, "sha256~bogus-2")
	if !errors.Is(err, ErrBusy) {
		t.Errorf("third review in flight: %v, want ErrBusy", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("ErrBusy took %v, want at once", d)
	}
	if n := f.cl.TokenReviewCount(); n != 2 {
		t.Errorf("%d TokenReviews reached the cluster, want 2", n)
	}
	release()
	wg.Wait()
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], ErrBadCredentials) {
		t.Errorf("held logins: %v", errs)
	}
	// The slots are free again.
	if _, err := f.c.Login(ctx, bobToken); !errors.Is(err, ErrDenied) {
		t.Errorf("after the reviews finished: %v, want ErrDenied", err)
	}
}

// A review nobody waits for any more is cancelled: the API call ends, its
// slot frees, and nothing is cached or logged as an outage.
func TestReviewCancelledWhenNoCallerWaits(t *testing.T) {
	f := newFixture(t, ClusterOptions{MaxReviews: 1})
	arrived, release := f.cl.HoldReviews()
	defer release()
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { _, err := f.c.Login(ctx1, aliceToken); done <- err }()
	<-arrived
	go func() { _, err := f.c.Login(ctx2, aliceToken); done <- err }()
	// Wait until the second caller has joined the review in flight.
	for f.waiters(aliceToken) != 2 {
		time.Sleep(time.Millisecond)
	}
	cancel1()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("first caller: %v, want context.Canceled", err)
	}
	if n := f.cl.Abandoned(); n != 0 {
		t.Errorf("review cancelled while a caller still waits (%d abandoned)", n)
	}
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		t.Errorf("second caller: %v, want context.Canceled and no outage", err)
	}
	// The cluster sees its caller hang up.
	deadline := time.Now().Add(10 * time.Second)
	for f.cl.Abandoned() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the held review was not cancelled after every caller left")
		}
		time.Sleep(5 * time.Millisecond)
	}
	release()
	// Its slot is free again, and the next login reviews afresh.
	for {
		id, err := f.c.Login(context.Background(), aliceToken)
		if errors.Is(err, ErrBusy) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // the cancelled call is still unwinding
			continue
		}
		if err != nil || id.Name != "alice" {
			t.Fatalf("after the cancelled review: %+v %v", id, err)
		}
		break
	}
	if strings.Contains(f.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a cancelled review was logged as an outage:\n%s", f.logs)
	}
}

func (f *fixture) waiters(token string) int {
	return f.c.flight.Waiters(sha256.Sum256([]byte(token)))
}

// A review that takes longer than ReviewTimeout is an outage.
func TestReviewTimeout(t *testing.T) {
	f := newFixture(t, ClusterOptions{ReviewTimeout: 300 * time.Millisecond})
	_, release := f.cl.HoldReviews()
	defer release()
	start := time.Now()
	_, err := f.c.Login(context.Background(), aliceToken)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("held review: %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the review took %v, want about the 300ms timeout", d)
	}
	if DefaultReviewTimeout >= 15*time.Second {
		t.Errorf("DefaultReviewTimeout %v, want less than 15s", DefaultReviewTimeout)
	}
}

// A 4xx answer that depends on what the user sent is a wrong credential
// (WARN), while the ones that say the cluster side is wrong stay outages.
func TestReviewAnswerCodes(t *testing.T) {
	for _, c := range []struct {
		code int
		want error
	}{
		{http.StatusBadRequest, ErrBadCredentials},
		{http.StatusUnprocessableEntity, ErrBadCredentials},
		{http.StatusRequestEntityTooLarge, ErrBadCredentials},
		{http.StatusTooManyRequests, ErrUnavailable},
		{http.StatusNotFound, ErrUnavailable},
		{http.StatusInternalServerError, ErrUnavailable},
	} {
		t.Run(fmt.Sprint(c.code), func(t *testing.T) {
			f := newFixture(t, ClusterOptions{})
			f.cl.FailReviews(c.code)
			_, err := f.c.Login(context.Background(), aliceToken)
			if !errors.Is(err, c.want) {
				t.Fatalf("review answered %d: %v, want %v", c.code, err, c.want)
			}
			logs := f.logs.String()
			if c.want == ErrBadCredentials && (strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"level":"WARN"`)) {
				t.Errorf("a %d was not logged at WARN only:\n%s", c.code, logs)
			}
			if c.want == ErrUnavailable && !strings.Contains(logs, `"level":"ERROR"`) {
				t.Errorf("a %d outage was not logged at ERROR:\n%s", c.code, logs)
			}
		})
	}
}

// A SubjectAccessReview is ours alone: a 4xx answer to it is an outage,
// never the user's wrong credentials, and is not cached.
func TestAccessReview4xxIsUnavailable(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusUnprocessableEntity} {
		f := newFixture(t, ClusterOptions{})
		f.cl.FailAccessReviews(code)
		_, err := f.c.Login(context.Background(), aliceToken)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBadCredentials) {
			t.Fatalf("SubjectAccessReview answered %d: %v, want ErrUnavailable", code, err)
		}
		if _, ok := f.c.Cached(aliceToken); ok {
			t.Errorf("an outage (%d) was cached", code)
		}
	}
}

// A SubjectAccessReview that is not allowed but carries an
// evaluationError is an outage, not a denial, and is not cached.
func TestEvaluationErrorIsUnavailableAndNotCached(t *testing.T) {
	f := newFixture(t, ClusterOptions{})
	f.cl.Revoke("alice")
	f.cl.SetEvaluationError("webhook authorizer: connection refused")
	_, err := f.c.Login(context.Background(), aliceToken)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrDenied) {
		t.Fatalf("evaluation error: %v, want ErrUnavailable", err)
	}
	if _, ok := f.c.Cached(aliceToken); ok {
		t.Error("an evaluation error was cached")
	}
	f.cl.SetEvaluationError("")
	f.cl.Allow("alice")
	if id, err := f.c.Login(context.Background(), aliceToken); err != nil || id.Name != "alice" {
		t.Errorf("after the authorizer recovered: %+v %v", id, err)
	}
	// An explicit denial with an evaluation error is still a denial.
	f.cl.Deny("bob")
	f.cl.SetEvaluationError("some error")
	if _, err := f.c.Login(context.Background(), bobToken); !errors.Is(err, ErrDenied) {
		t.Errorf("explicit denial: %v, want ErrDenied", err)
	}
}

// A refresh token naming another cluster (issued while QCI_CLUSTERS_FILE
// listed it, under the same signing keys) is refused by the single
// cluster, even where a refresh reviews nothing at login time: its scopes
// must not be granted as that other cluster's were.
func TestAuthorizeRefusesAnotherClustersIdentity(t *testing.T) {
	for _, ns := range []string{"", "ocp"} {
		f := newFixture(t, ClusterOptions{Namespace: ns})
		id, err := f.c.Login(context.Background(), aliceToken)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.c.Authorize(context.Background(), id); err != nil {
			t.Errorf("namespace %q: this cluster's own identity: %v", ns, err)
		}
		id.Cluster = "build01"
		if err := f.c.Authorize(context.Background(), id); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("namespace %q: an identity of cluster build01: %v, want ErrBadCredentials", ns, err)
		}
	}
}
