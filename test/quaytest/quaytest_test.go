package quaytest

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"
)

// clock is a settable clock for token and URL expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func start(t *testing.T) (*Server, *clock, *http.Client) {
	t.Helper()
	clk := &clock{now: time.Now()}
	s, err := Start(Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CA().Pool()}}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return s, clk, c
}

func do(t *testing.T, c *http.Client, method, u, tok string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func token(t *testing.T, s *Server, c *http.Client, user, pass string, scopes ...string) (int, string) {
	t.Helper()
	q := url.Values{"service": {s.Host()}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, s.Realm()+"?"+q.Encode(), nil)
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	if _, ok := ans["expires_in"]; ok {
		t.Errorf("quay's token answer has no expires_in: %v", ans)
	}
	tok, _ := ans["token"].(string)
	return resp.StatusCode, tok
}

const pull = "repository:openshift/ci:pull"

func TestChallengeAndToken(t *testing.T) {
	s, _, c := start(t)
	resp, body := do(t, c, http.MethodGet, s.URL()+"/v2/", "")
	wantChallenge := fmt.Sprintf(`Bearer realm="https://%s/v2/auth",service="%s"`, s.Host(), s.Host())
	if resp.StatusCode != 401 || string(body) != "true" || resp.Header.Get("WWW-Authenticate") != wantChallenge ||
		resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("/v2/ without a token: %d %q %q", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	if code, _ := token(t, s, c, "openshift+robot", "wrong", pull); code != 401 {
		t.Errorf("wrong robot token: %d", code)
	}
	code, tok := token(t, s, c, "openshift+robot", "robot-token", pull)
	if code != 200 || tok == "" {
		t.Fatalf("robot token: %d", code)
	}
	if resp, body := do(t, c, http.MethodGet, s.URL()+"/v2/", tok); resp.StatusCode != 200 || string(body) != "true" {
		t.Errorf("/v2/ with a token: %d %q", resp.StatusCode, body)
	}
	// A token for another repository grants nothing on this one.
	_, other := token(t, s, c, "openshift+robot", "robot-token", "repository:openshift/other:pull")
	resp, body = do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/tags/list", other)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:openshift/ci:pull"`) ||
		!strings.Contains(string(body), `"code":"UNAUTHORIZED"`) {
		t.Errorf("token for another repository: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if code, _ := token(t, s, c, "openshift+robot", "robot-token", "repository:bad scope"); code != 400 {
		t.Errorf("malformed scope: %d", code)
	}
	// Anonymous, with a scope: a token, with no access to a private repository.
	resp, body = do(t, c, http.MethodGet, s.Realm()+"?service="+s.Host()+"&scope="+pull, "")
	var anon struct{ Token string }
	if err := json.Unmarshal(body, &anon); err != nil || resp.StatusCode != 200 || anon.Token == "" {
		t.Fatalf("anonymous token: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/tags/list", anon.Token); resp.StatusCode != 401 {
		t.Errorf("anonymous token on a private repository: %d", resp.StatusCode)
	}
	if resp, _ := do(t, c, http.MethodGet, s.Realm()+"?service="+s.Host(), ""); resp.StatusCode != 401 {
		t.Errorf("anonymous, no scope: %d", resp.StatusCode)
	}
	// A restart with new keys refuses every old token.
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
	if resp, body := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/tags/list", tok); resp.StatusCode != 401 || !strings.Contains(string(body), `"error"`) {
		t.Errorf("old token after a restart: %d %s", resp.StatusCode, body)
	}
}

func TestTagPagingAndLink(t *testing.T) {
	s, _, c := start(t)
	ctx := context.Background()
	if _, err := s.PushRandomImage(ctx, "tag-000", 1, 1024); err != nil {
		t.Fatal(err)
	}
	d, _ := s.PutManifest("", "application/vnd.oci.image.manifest.v1+json", []byte("{}"))
	for i := 1; i < 250; i++ {
		if err := s.Tag(fmt.Sprintf("tag-%03d", i), d); err != nil {
			t.Fatal(err)
		}
	}
	_, tok := token(t, s, c, "openshift+robot", "robot-token", pull)
	var all []string
	next := "/v2/openshift/ci/tags/list"
	var links []string
	for next != "" {
		resp, body := do(t, c, http.MethodGet, s.URL()+next, tok)
		var page struct {
			Name string
			Tags []string
		}
		if err := json.Unmarshal(body, &page); err != nil || resp.StatusCode != 200 || page.Name != "openshift/ci" {
			t.Fatalf("%s: %d %s %v", next, resp.StatusCode, body, err)
		}
		all = append(all, page.Tags...)
		link := resp.Header.Get("Link")
		links = append(links, link)
		next = ""
		if link != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		}
	}
	want := []string{
		`</v2/openshift/ci/tags/list?n=100&last=tag-099>; rel="next"`,
		`</v2/openshift/ci/tags/list?n=100&last=tag-199>; rel="next"`,
		``,
	}
	if strings.Join(links, "|") != strings.Join(want, "|") {
		t.Errorf("Links:\n%s\nwant\n%s", strings.Join(links, "\n"), strings.Join(want, "\n"))
	}
	if len(all) != 250 || all[0] != "tag-000" || all[249] != "tag-249" {
		t.Errorf("%d tags: %v…", len(all), all[:3])
	}
	for _, tc := range []struct {
		query string
		n     int
		link  string
	}{
		{"n=10", 10, `</v2/openshift/ci/tags/list?n=10&last=tag-009>; rel="next"`},
		{"n=500", 100, `</v2/openshift/ci/tags/list?n=100&last=tag-099>; rel="next"`},
		{"n=0", 0, ""},
		{"n=x", 100, `</v2/openshift/ci/tags/list?n=100&last=tag-099>; rel="next"`},
		{"n=10&last=tag-245", 4, ""},
	} {
		resp, body := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/tags/list?"+tc.query, tok)
		var page struct{ Tags []string }
		_ = json.Unmarshal(body, &page)
		if len(page.Tags) != tc.n || resp.Header.Get("Link") != tc.link {
			t.Errorf("%s: %d tags, Link %q; want %d, %q", tc.query, len(page.Tags), resp.Header.Get("Link"), tc.n, tc.link)
		}
	}
	s.SetAbsoluteLinks(true)
	resp, _ := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/tags/list", tok)
	if got := resp.Header.Get("Link"); got != `<`+s.URL()+`/v2/openshift/ci/tags/list?n=100&last=tag-099>; rel="next"` {
		t.Errorf("absolute Link %q", got)
	}
}

func TestManifestsAndBlobRedirect(t *testing.T) {
	s, clk, c := start(t)
	ctx := context.Background()
	img, err := s.PushRandomImage(ctx, "latest", 2, 4096)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := s.PushRandomIndex(ctx, "multi")
	if err != nil {
		t.Fatal(err)
	}
	_, tok := token(t, s, c, "openshift+robot", "robot-token", pull)
	digest, _ := img.Digest()
	raw, _ := img.RawManifest()
	mt, _ := img.MediaType()
	for _, ref := range []string{"latest", digest.String()} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp, body := do(t, c, method, s.URL()+"/v2/openshift/ci/manifests/"+ref, tok, "Accept", string(mt))
			wantBody := string(raw)
			if method == http.MethodHead {
				wantBody = ""
			}
			if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != digest.String() ||
				resp.Header.Get("Content-Type") != string(mt) || resp.ContentLength != int64(len(raw)) || string(body) != wantBody {
				t.Errorf("%s %s: %d %v", method, ref, resp.StatusCode, resp.Header)
			}
		}
	}
	idxDigest, _ := idx.Digest()
	if resp, _ := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/manifests/multi", tok, "Accept", string(types.OCIImageIndex)); resp.StatusCode != 200 ||
		resp.Header.Get("Docker-Content-Digest") != idxDigest.String() {
		t.Errorf("index: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, body := do(t, c, http.MethodGet, s.URL()+"/v2/openshift/ci/manifests/nope", tok, "Accept", string(mt)); resp.StatusCode != 404 ||
		string(body) != `{"errors":[{"code":"MANIFEST_UNKNOWN","detail":{},"message":"manifest unknown"}]}`+"\n" {
		t.Errorf("unknown tag: %d %s", resp.StatusCode, body)
	}

	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	blob := s.URL() + "/v2/openshift/ci/blobs/" + ld.String()
	if resp, _ := do(t, c, http.MethodHead, blob, tok); resp.StatusCode != 200 || resp.ContentLength != size ||
		resp.Header.Get("Docker-Content-Digest") != ld.String() || resp.Header.Get("Content-Type") != "application/octet-stream" {
		t.Errorf("HEAD blob: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ := do(t, c, http.MethodGet, blob, tok)
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Host != s.CDNHost() || loc.Query().Get("Signature") == "" ||
		loc.Query().Get("Expires") == "" || resp.Header.Get("Docker-Content-Digest") != ld.String() {
		t.Fatalf("GET blob: %d %v", resp.StatusCode, resp.Header)
	}
	resp, body := do(t, c, http.MethodGet, loc.String(), "")
	sum := sha256.Sum256(body)
	if resp.StatusCode != 200 || "sha256:"+hex.EncodeToString(sum[:]) != ld.String() {
		t.Errorf("CDN GET: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, part := do(t, c, http.MethodGet, loc.String(), "", "Range", "bytes=10-"); resp.StatusCode != 206 || string(part) != string(body[10:]) {
		t.Errorf("CDN Range: %d", resp.StatusCode)
	}
	// The URL is good only as signed and only until it expires.
	tampered := strings.Replace(loc.String(), "repo_name=ci", "repo_name=other", 1)
	if resp, _ := do(t, c, http.MethodGet, tampered, ""); resp.StatusCode != 403 {
		t.Errorf("tampered URL: %d", resp.StatusCode)
	}
	unsigned := *loc
	unsigned.RawQuery = ""
	if resp, _ := do(t, c, http.MethodGet, unsigned.String(), ""); resp.StatusCode != 403 {
		t.Errorf("unsigned URL: %d", resp.StatusCode)
	}
	clk.Advance(61 * time.Second)
	if resp, body := do(t, c, http.MethodGet, loc.String(), ""); resp.StatusCode != 403 || !strings.Contains(string(body), "expired") {
		t.Errorf("expired URL: %d %s", resp.StatusCode, body)
	}
	if n := len(s.CDNRequests()); n != 5 {
		t.Errorf("the CDN counted %d requests, want 5", n)
	}
}

func TestRateLimitAndCookie(t *testing.T) {
	s, _, c := start(t)
	s.RateLimit(1, 7*time.Second)
	s.SetCookie(&http.Cookie{Name: "_csrf_token", Value: "x"})
	resp, _ := do(t, c, http.MethodGet, s.URL()+"/v2/", "")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" || resp.Header.Get("Set-Cookie") == "" {
		t.Errorf("rate limited: %d %v", resp.StatusCode, resp.Header)
	}
	if resp, _ := do(t, c, http.MethodGet, s.URL()+"/v2/", ""); resp.StatusCode != 401 {
		t.Errorf("after the limit: %d", resp.StatusCode)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Status != 429 || reqs[0].Answer.Get("Retry-After") != "7" || reqs[1].Path != "/v2/" {
		t.Errorf("requests %v", reqs)
	}
}
