package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

// The failed-login limit of the flood: per client address and per user
// name, a burst of floodBurst and floodRate a second.
const (
	floodRate   = 5
	floodBurst  = 20
	floodTokens = 10_000
	floodUsers  = 16
	floodAddrs  = 100
	// floodWorkers send the flood, each one request after the other.
	floodWorkers = 16
)

// TestFlood sends 10,000 distinct bogus cluster tokens, each with a user
// name of its own, first from one client address and then from 100 (through
// the trusted X-Forwarded-For), while 16 real users keep logging in and
// pulling. It checks what the issue asks of the login path: the
// TokenReviews that reach the cluster stay under the configured bound, the
// real users see no error and cause no review beyond their first (their
// cache entries survive), the proxy's RSS stays within 8 MiB, and /healthz
// answers fast throughout. The figures are logged for test/bench/README.md.
func TestFlood(t *testing.T) {
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	cl, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	userTokens := make([]string, floodUsers)
	for i := range userTokens {
		name := fmt.Sprintf("user%02d", i)
		userTokens[i] = "sha256~real-" + name + "-token"
		cl.AddToken(userTokens[i], clustertest.User{Name: name, UID: "uid-" + name, Groups: []string{"system:authenticated"}})
		cl.Allow(name)
	}
	kc, err := cl.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, kind: distribution, up: distributionUpstream{reg}, reg: reg, cluster: cl}
	w.proxy = proxyproc.Start(t, binary, map[string]string{
		"QCI_UPSTREAM_URL":     reg.URL(),
		"QCI_ROBOT_USERNAME":   robotUser,
		"QCI_ROBOT_PASSWORD":   robotPass,
		"QCI_SIGNING_KEY":      signingKey,
		"QCI_KUBECONFIG":       kc,
		"QCI_LOGIN_RATE":       strconv.Itoa(floodRate),
		"QCI_LOGIN_BURST":      strconv.Itoa(floodBurst),
		"QCI_CLIENT_IP_HEADER": "X-Forwarded-For",
	})
	img, _ := pushContent(t, w)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	blob, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	pid := proxyPID(t, w.proxy)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	// A real user's round: a login (a cached cluster login after the first,
	// which is one review), then a manifest and a blob pulled with the
	// user's first access token. Pulling with each new token would fill
	// the proxy's verified-token cache (up to 8,192 tokens of about 2 KiB)
	// whatever the flood does; this measures the flood.
	firstToken := make([]string, floodUsers)
	pull := func(i int) error {
		tok, code, err := floodLogin(client, w.proxy.URL, fmt.Sprintf("192.0.2.%d", i+1), fmt.Sprintf("user%02d", i), userTokens[i])
		if err != nil || code != 200 {
			return fmt.Errorf("user%02d login: %d %v", i, code, err)
		}
		if firstToken[i] == "" {
			firstToken[i] = tok
		}
		tok = firstToken[i]
		for _, path := range []string{"/v2/" + repo + "/manifests/" + tag, "/v2/" + repo + "/blobs/" + blob.String()} {
			req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("user%02d %s: %w", i, path, err)
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || err != nil {
				return fmt.Errorf("user%02d %s: %d %v", i, path, resp.StatusCode, err)
			}
		}
		return nil
	}
	for i := range floodUsers {
		if err := pull(i); err != nil {
			t.Fatal(err)
		}
	}
	userReviews := func() int {
		n := 0
		for _, tr := range cl.TokenReviews() {
			if slices.Contains(userTokens, tr.Spec.Token) {
				n++
			}
		}
		return n
	}
	if n := userReviews(); n != floodUsers {
		t.Fatalf("%d reviews for %d users' first logins", n, floodUsers)
	}

	// The real users and a /healthz prober run through both floods.
	stop := make(chan struct{})
	var users, prober sync.WaitGroup
	var pulls, userErrors atomic.Int64
	var firstUserError atomic.Value
	for i := range floodUsers {
		users.Add(1)
		go func() {
			defer users.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := pull(i); err != nil {
					userErrors.Add(1)
					firstUserError.CompareAndSwap(nil, err.Error())
				}
				pulls.Add(1)
			}
		}()
	}
	// The prober records /healthz latencies and the proxy's RSS, apart for
	// the time before the floods (real users only) and during them.
	var flooding atomic.Bool
	var health [2][]time.Duration
	var healthErrors int
	var rssPeak int64
	prober.Add(1)
	go func() {
		defer prober.Done()
		hc := &http.Client{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			phase := 0
			if flooding.Load() {
				phase = 1
				if rss, err := readRSS(pid); err == nil {
					rssPeak = max(rssPeak, rss)
				}
			}
			start := time.Now()
			resp, err := hc.Get(w.proxy.URL + "/healthz")
			if err != nil {
				healthErrors++
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				healthErrors++
			}
			health[phase] = append(health[phase], time.Since(start))
		}
	}()
	// Two seconds of real users alone: the RSS and /healthz to compare with.
	// Three seconds of real users alone: the RSS and /healthz to compare.
	time.Sleep(3 * time.Second)
	rssBefore := vmRSS(t, pid)
	flooding.Store(true)

	type floodResult struct {
		elapsed time.Duration
		reviews int
		codes   map[int]int
	}
	flood := func(name string, addrs int) floodResult {
		before := cl.TokenReviewCount()
		var mu sync.Mutex
		codes := map[int]int{}
		next := atomic.Int64{}
		start := time.Now()
		var wg sync.WaitGroup
		for range floodWorkers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= floodTokens {
						return
					}
					addr := fmt.Sprintf("198.51.%d.%d", 100+i%addrs/250, i%addrs%250+1)
					_, code, err := floodLogin(client, w.proxy.URL, addr,
						fmt.Sprintf("%s-%05d", name, i), fmt.Sprintf("sha256~%s-bogus-%05d", name, i))
					if err != nil {
						code = -1
					}
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return floodResult{elapsed: time.Since(start), reviews: cl.TokenReviewCount() - before, codes: codes}
	}
	one := flood("one", 1)
	rssOne := vmRSS(t, pid)
	many := flood("many", floodAddrs)
	rssAfter := vmRSS(t, pid)
	close(stop)
	users.Wait()
	prober.Wait()

	check := func(name string, r floodResult, addrs int) {
		// Each address may fail its burst at once and floodRate a second
		// after; the user names are all distinct, so only the address limit
		// applies. One second of slack for the clock.
		bound := addrs * (floodBurst + int(float64(floodRate)*(r.elapsed.Seconds()+1)))
		t.Logf("flood from %d address(es): %d bogus logins in %v (%.0f/s): %d TokenReviews reached the cluster (bound %d); answers %v",
			addrs, floodTokens, r.elapsed.Round(time.Millisecond), floodTokens/r.elapsed.Seconds(), r.reviews, bound, r.codes)
		if r.reviews > bound {
			t.Errorf("%s: %d TokenReviews reached the cluster, bound %d", name, r.reviews, bound)
		}
		if r.codes[http.StatusTooManyRequests] == 0 || r.codes[-1] != 0 {
			t.Errorf("%s: answers %v, want 429s and no transport error", name, r.codes)
		}
		for code := range r.codes {
			if code != 401 && code != 429 && code != 503 {
				t.Errorf("%s: %d answers %d to a bogus token", name, r.codes[code], code)
			}
		}
	}
	check("one address", one, 1)
	check("100 addresses", many, floodAddrs)

	t.Logf("real users: %d pulls (login, manifest, blob) during the floods, %d errors; TokenReviews for their tokens: %d (one each before the floods)",
		pulls.Load(), userErrors.Load(), userReviews())
	if n := userErrors.Load(); n != 0 {
		t.Errorf("real users saw %d errors, first: %v", n, firstUserError.Load())
	}
	if n := userReviews(); n != floodUsers {
		t.Errorf("real users caused %d TokenReviews, want %d: their cache entries did not survive", n, floodUsers)
	}

	mib := func(n int64) float64 { return float64(n) / (1 << 20) }
	growth := rssAfter - rssBefore
	t.Logf("proxy RSS: %.1f MiB with real users alone, peak %.1f MiB during the floods, %.1f MiB after the first, %.1f MiB after the second (%+.1f MiB)",
		mib(rssBefore), mib(rssPeak), mib(rssOne), mib(rssAfter), mib(growth))
	if growth > 8<<20 || growth < -8<<20 {
		t.Errorf("RSS changed by %+.1f MiB, want within ±8 MiB", mib(growth))
	}

	var p50 [2]time.Duration
	for phase, name := range []string{"real users alone", "during the floods"} {
		h := health[phase]
		slices.Sort(h)
		if len(h) < 10 {
			t.Fatalf("only %d /healthz probes %s", len(h), name)
		}
		p50[phase] = h[len(h)/2]
		t.Logf("/healthz %s: %d probes, p50 %v, p90 %v, p99 %v, max %v", name, len(h),
			h[len(h)/2].Round(10*time.Microsecond), h[len(h)*9/10].Round(10*time.Microsecond),
			h[len(h)*99/100].Round(10*time.Microsecond), h[len(h)-1].Round(10*time.Microsecond))
	}
	// A measured property on a test machine shared with the clients, the
	// registry and the cluster stand-in: the figures are logged for
	// test/bench/README.md, the assertion is generous (the median, at 2.5
	// times the 10 ms asked for; the tail is the machine's, as the phase
	// of real users alone shows).
	if p50[1] > 25*time.Millisecond || healthErrors != 0 {
		t.Errorf("/healthz p50 %v during the floods (want well under 25ms), %d errors", p50[1], healthErrors)
	}

	limitLines := strings.Count(w.proxy.Logs(), "failed-login limit reached")
	t.Logf("limit lines logged: %d (one per address or user name that became limited)", limitLines)
	if limitLines == 0 || limitLines > 1+floodAddrs {
		t.Errorf("%d limit lines, want between 1 and %d: one per limited address", limitLines, 1+floodAddrs)
	}
}

// floodLogin is a docker-style GET /v2/auth from the client address addr,
// as Knative would forward it: after what the client claimed (the same
// made-up address for every client), the address its ingress saw, then
// the pod address and loopback that activator and queue-proxy append.
func floodLogin(c *http.Client, base, addr, user, pass string) (string, int, error) {
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/auth?scope=repository:"+repo+":pull", nil)
	req.SetBasicAuth(user, pass)
	req.Header.Set("X-Forwarded-For", "203.0.113.250, "+addr+", 10.8.0.12, 127.0.0.1")
	resp, err := c.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		return "", resp.StatusCode, err
	}
	var ans struct{ Token string }
	if err := json.Unmarshal(body, &ans); err != nil {
		return "", resp.StatusCode, err
	}
	return ans.Token, resp.StatusCode, nil
}

// proxyPID finds the proxy process: the test binary's child running the
// built binary with the proxy's PORT.
func proxyPID(t *testing.T, p *proxyproc.Process) int {
	t.Helper()
	port := p.Host[strings.LastIndexByte(p.Host, ':')+1:]
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		if exe, err := os.Readlink(d + "/exe"); err != nil || exe != binary {
			continue
		}
		env, err := os.ReadFile(d + "/environ")
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), "PORT="+port) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(d))
		if err == nil {
			return pid
		}
	}
	t.Fatalf("no process of %s with PORT=%s", binary, port)
	return 0
}

// vmRSS is readRSS for the test's goroutine.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	rss, err := readRSS(pid)
	if err != nil {
		t.Fatal(err)
	}
	return rss
}

// readRSS reads the resident set size of pid from /proc/PID/status.
func readRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
