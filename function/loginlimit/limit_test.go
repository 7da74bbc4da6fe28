package loginlimit

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func newLimiter(t *testing.T, o Options) *Limiter {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func limited(t *testing.T, l *Limiter, now time.Time, addr, user string) time.Duration {
	t.Helper()
	retry, ok := l.Limited(now, addr, user)
	if !ok {
		t.Fatalf("%v: %s/%s not limited, want limited", now.Sub(t0), addr, user)
	}
	return retry
}

func notLimited(t *testing.T, l *Limiter, now time.Time, addr, user string) {
	t.Helper()
	if retry, ok := l.Limited(now, addr, user); ok {
		t.Fatalf("%v: %s/%s limited (retry after %v), want not", now.Sub(t0), addr, user, retry)
	}
}

func TestBurstThenRefill(t *testing.T) {
	l := newLimiter(t, Options{Rate: 2, Burst: 3})
	for i := range 3 {
		notLimited(t, l, t0, "10.0.0.1", fmt.Sprint("u", i))
		l.Failed(t0, "10.0.0.1", fmt.Sprint("u", i))
	}
	// The address is out of tokens; other users from it are limited too.
	if retry := limited(t, l, t0, "10.0.0.1", "someone-else"); retry != 500*time.Millisecond {
		t.Errorf("retry after %v, want 500ms (one token at 2/s)", retry)
	}
	// Another address with a fresh user is not.
	notLimited(t, l, t0, "10.0.0.2", "fresh")
	// Half a second later one token is back.
	notLimited(t, l, t0.Add(500*time.Millisecond), "10.0.0.1", "someone-else")
	l.Failed(t0.Add(500*time.Millisecond), "10.0.0.1", "someone-else")
	limited(t, l, t0.Add(500*time.Millisecond), "10.0.0.1", "x")
}

// Checking takes no token: only failures do.
func TestCheckingTakesNoToken(t *testing.T) {
	l := newLimiter(t, Options{Rate: 1, Burst: 1})
	for range 100 {
		notLimited(t, l, t0, "10.0.0.1", "alice")
	}
	l.Failed(t0, "10.0.0.1", "alice")
	limited(t, l, t0, "10.0.0.1", "alice")
}

func TestUsernameLimitedAcrossAddresses(t *testing.T) {
	l := newLimiter(t, Options{Rate: 1, Burst: 2})
	l.Failed(t0, "10.0.0.1", "robot")
	l.Failed(t0, "10.0.0.2", "robot")
	limited(t, l, t0, "10.0.0.3", "robot")
	notLimited(t, l, t0, "10.0.0.3", "other")
}

// One report when a key becomes limited, not one per failure after, nor
// one per token refilled while the key keeps hammering; a new report only
// after it went quiet long enough to refill completely.
func TestReportOncePerLimitedSpell(t *testing.T) {
	l := newLimiter(t, Options{Rate: 10, Burst: 2})
	if got := l.Failed(t0, "a", "u1"); len(got) != 0 {
		t.Errorf("first failure reported %v", got)
	}
	got := l.Failed(t0, "a", "u1")
	if len(got) != 2 || got[0] != (Key{Address, "a"}) || got[1] != (Key{Username, "u1"}) {
		t.Errorf("second failure reported %v, want address a and username u1", got)
	}
	for i := range 50 {
		now := t0.Add(time.Duration(i+1) * 100 * time.Millisecond) // one token back each time
		if got := l.Failed(now, "a", "u1"); len(got) != 0 {
			t.Fatalf("hammering failure %d reported %v again", i, got)
		}
	}
	quiet := t0.Add(time.Hour)
	l.Failed(quiet, "a", "u1")
	if got := l.Failed(quiet, "a", "u1"); len(got) != 2 {
		t.Errorf("after a quiet hour, limited again: reported %v, want both keys", got)
	}
}

// Memory is bounded: past Size keys the least recently used is dropped
// and starts again with a full bucket.
func TestFixedSizeEvictsOldestKeys(t *testing.T) {
	l := newLimiter(t, Options{Rate: 0.001, Burst: 1, Size: 3})
	l.Failed(t0, "10.0.0.1", "u1")
	limited(t, l, t0, "10.0.0.1", "fresh")
	for i := 2; i <= 4; i++ {
		l.Failed(t0, fmt.Sprint("10.0.0.", i), fmt.Sprint("u", i))
	}
	if n := l.addrs.Len(); n != 3 {
		t.Errorf("%d addresses kept, want 3", n)
	}
	notLimited(t, l, t0, "10.0.0.1", "fresh")
	limited(t, l, t0, "10.0.0.4", "fresh")
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{{Rate: 0, Burst: 1}, {Rate: -1, Burst: 1}, {Rate: 1, Burst: 0}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestClientAddress(t *testing.T) {
	for _, c := range []struct {
		remote, header string
		xff            []string
		want           string
	}{
		{"192.0.2.1:1234", "", []string{"203.0.113.9"}, "192.0.2.1"},                             // header not trusted
		{"192.0.2.1:1234", "X-Forwarded-For", nil, "192.0.2.1"},                                  // none sent
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"203.0.113.9"}, "203.0.113.9"},            // Cloud Run
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"6.6.6.6, 203.0.113.9"}, "203.0.113.9"},   // a claim, then the ingress's entry
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"6.6.6.6", "203.0.113.9"}, "203.0.113.9"}, // two lines
		// Knative: the ingress appends the client, activator and
		// queue-proxy append pod addresses and loopback.
		{"127.0.0.1:1234", "X-Forwarded-For", []string{"6.6.6.6, 203.0.113.9, 10.8.0.12, 127.0.0.1"}, "203.0.113.9"},
		{"127.0.0.1:1234", "X-Forwarded-For", []string{"203.0.113.9, 10.8.0.12", "127.0.0.1"}, "203.0.113.9"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"203.0.113.9, junk"}, "192.0.2.1"},   // not an IP: the peer
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"junk, 10.0.0.1"}, "192.0.2.1"},      // never left of a bad entry
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"10.0.0.1, 127.0.0.1"}, "192.0.2.1"}, // no public entry
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"2001:db8:1:2:3:4:5:6"}, "2001:db8:1:2::/64"},
		{"192.0.2.1:1234", "X-Forwarded-For", []string{"[2001:db8::7]:443, fe80::1"}, "2001:db8::/64"},
		{"[2001:db8::1]:443", "", nil, "2001:db8::/64"},
		{"[::ffff:192.0.2.7]:443", "", nil, "192.0.2.7"},
	} {
		r := httptest.NewRequest("GET", "/v2/auth", nil)
		r.RemoteAddr = c.remote
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := ClientAddress(r, c.header); got != c.want {
			t.Errorf("ClientAddress(%s, %q, %q) = %q, want %q", c.remote, c.header, c.xff, got, c.want)
		}
	}
}

// An empty user is limited by its address alone: no bucket of "" is shared
// by every login that names nobody.
func TestEmptyUserLimitsByAddressOnly(t *testing.T) {
	l := newLimiter(t, Options{Rate: 1, Burst: 2, Size: 16})
	for i := range 2 {
		p, _, ok := l.Begin(t0, fmt.Sprintf("192.0.2.%d", i), "")
		if !ok {
			t.Fatalf("login %d refused", i)
		}
		l.End(t0, p, true)
	}
	if _, _, ok := l.Begin(t0, "192.0.2.9", ""); !ok {
		t.Error("a third address was refused after two others failed without a user name")
	}
	if _, limited := l.Limited(t0, "192.0.2.0", ""); limited {
		t.Error("one failure limited an address of burst 2")
	}
}
