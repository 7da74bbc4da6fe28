package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/test/clienttools"
)

// manyTags pushes an image under tag and points 249 more tags at it: 250
// in all, three of quay's pages. It returns them sorted.
func manyTags(t *testing.T, w *world) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := w.up.PushRandomImage(ctx, tag, 1, 1024); err != nil {
		t.Fatal(err)
	}
	var more []string
	for i := range 249 {
		more = append(more, fmt.Sprintf("t-%03d", i))
	}
	if err := w.up.tag(ctx, tag, more); err != nil {
		t.Fatal(err)
	}
	w.up.ResetRequests()
	all := append([]string{tag}, more...)
	slices.Sort(all)
	return all
}

// assertTagPages checks, behind quay, that the tag list reached the
// upstream as its three pages, each asked for where the last one ended.
func (w *world) assertTagPages(t *testing.T, all []string) {
	t.Helper()
	if w.quay == nil {
		return
	}
	var lasts []string
	for _, r := range w.up.requests() {
		if r.Path == "/v2/"+repo+"/tags/list" && r.Status == 200 {
			q, _ := url.ParseQuery(r.RawQuery)
			lasts = append(lasts, q.Get("last"))
		}
	}
	want := []string{"", all[99], all[199]}
	if !slices.Equal(lasts, want) {
		t.Errorf("the upstream was asked for pages after %q, want %q", lasts, want)
	}
}

// TestTagListPaging: every tag of a list longer than a page, through the
// function, with skopeo list-tags and remote.List (crane ls) over
// HTTP/1.1 and h2c; behind quay the function passes on quay's Link as quay
// builds it today (a path) and, when an upstream's Link names its own
// absolute URL, rewrites it to the function's, so a client's next page
// comes back through the function with its token.
func TestTagListPaging(t *testing.T) {
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	eachUpstream(t, func(t *testing.T, w *world) {
		all := manyTags(t, w)
		links := []bool{false}
		if w.quay != nil {
			links = append(links, true)
		}
		for _, absolute := range links {
			t.Run(fmt.Sprintf("absoluteLink=%v", absolute), func(t *testing.T) {
				if w.quay != nil {
					w.quay.SetAbsoluteLinks(absolute)
				}
				w.up.ResetRequests()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"list-tags", "--creds", "alice:" + aliceToken}, w.tlsArgs(""),
					[]string{"docker://" + w.containersHost() + "/" + repo})...)
				if err != nil {
					t.Fatalf("skopeo list-tags: %v\n%s", err, out)
				}
				var listed struct{ Tags []string }
				if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &listed); err != nil {
					t.Fatalf("skopeo list-tags: %v\n%s", err, out)
				}
				slices.Sort(listed.Tags)
				if !slices.Equal(listed.Tags, all) {
					t.Errorf("skopeo list-tags: %d tags, want %d", len(listed.Tags), len(all))
				}
				w.assertTagPages(t, all)
				w.assertUpstreamSawOnlyRobotTokens()

				eachProtocol(t, w, func(t *testing.T, c *http.Client) {
					ref, _ := name.NewRepository(w.proxy.Host+"/"+repo, name.Insecure)
					tags, err := remote.List(ref, remote.WithTransport(c.Transport),
						remote.WithAuth(&authn.Basic{Username: "alice", Password: aliceToken}))
					slices.Sort(tags)
					if err != nil || !slices.Equal(tags, all) {
						t.Errorf("remote.List: %d tags, want %d: %v", len(tags), len(all), err)
					}
					w.assertTagPages(t, all)
					w.assertUpstreamSawOnlyRobotTokens()
				})
			})
		}
	})
}

// TestBlobRedirectToCDN: behind quay a blob GET through the function is
// the upstream's 302 to its pre-signed CDN URL, passed on as it is; the
// client follows it and gets the bytes, and the CDN sees no Authorization
// (neither the client's token nor the robot's).
func TestBlobRedirectToCDN(t *testing.T) {
	w := newWorld(t, quay)
	img, _ := pushContent(t, w)
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	size, _ := layers[0].Size()
	tok := login(t, http.DefaultClient, w, "alice", aliceToken)
	blob := w.proxy.URL + "/v2/" + repo + "/blobs/" + d.String()

	req, _ := http.NewRequest(http.MethodHead, blob, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ContentLength != size || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("HEAD blob: %d, %d bytes, %v", resp.StatusCode, resp.ContentLength, resp.Header)
	}

	req, _ = http.NewRequest(http.MethodGet, blob, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Host != w.quay.CDNHost() || loc.Query().Get("Signature") == "" {
		t.Fatalf("GET blob: %d, Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if len(w.quay.CDNRequests()) != 0 {
		t.Fatal("the CDN was asked before the client followed the redirect")
	}
	// Passed on as the upstream sent it, byte for byte.
	var sent []string
	for _, r := range w.quay.Requests() {
		if r.Method == http.MethodGet && r.Status == http.StatusFound {
			sent = append(sent, r.Answer.Get("Location"))
		}
	}
	if len(sent) != 1 || sent[0] != resp.Header.Get("Location") {
		t.Errorf("Location %q, the upstream sent %q", resp.Header.Get("Location"), sent)
	}
	// The client follows it (Go drops Authorization on a redirect to
	// another host, as containers/image and containerd do).
	req, _ = http.NewRequest(http.MethodGet, blob, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, n, err := hashBody(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || n != size || got != d.String() || resp.Request.URL.Host != w.quay.CDNHost() {
		t.Errorf("followed: %d from %s, %d bytes, %s, %v", resp.StatusCode, resp.Request.URL.Host, n, got, err)
	}
	w.assertUpstreamSawOnlyRobotTokens(tok)
	w.assertCDNServed(1)
	for _, r := range w.up.requests() {
		if strings.HasPrefix(r.Path, "/v2/"+repo+"/blobs/") && r.Method == http.MethodGet && r.Status != http.StatusFound {
			t.Errorf("upstream blob GET answered %d", r.Status)
		}
	}
}

// TestNothingOfTheUpstreamReachesClients: behind quay, no answer of the
// function names the upstream's host (in Link, Location, a challenge's
// realm or anywhere else), sets the upstream's cookies, or repeats its
// challenge; the one other host a client is sent to is the CDN.
func TestNothingOfTheUpstreamReachesClients(t *testing.T) {
	w := newWorld(t, quay)
	manyTags(t, w)
	img, err := w.up.PushRandomImage(context.Background(), "img", 1, 4096)
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	w.quay.SetAbsoluteLinks(true)
	w.quay.SetCookie(&http.Cookie{Name: "_csrf_token", Value: "upstream-session", Domain: "localhost"})
	upstreamNames := []string{w.quay.Host(), "localhost:" + strings.TrimPrefix(w.quay.Host(), "127.0.0.1:")}

	check := func(what string, resp *http.Response, body []byte) {
		t.Helper()
		for k, vs := range resp.Header {
			for _, v := range vs {
				for _, n := range upstreamNames {
					if strings.Contains(v, n) {
						t.Errorf("%s: %s names the upstream: %q", what, k, v)
					}
				}
			}
		}
		if c := resp.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("%s: Set-Cookie %q reached the client", what, c)
		}
		if a := resp.Header.Get("WWW-Authenticate"); a != "" && !strings.Contains(a, `realm="`+w.proxy.URL+`/v2/auth"`) {
			t.Errorf("%s: challenge %q is not the function's", what, a)
		}
		if loc := resp.Header.Get("Location"); loc != "" {
			if u, err := url.Parse(loc); err != nil || (u.Host != w.quay.CDNHost() && u.Host != w.proxy.Host && u.Host != "") {
				t.Errorf("%s: Location %q", what, loc)
			}
		}
		for _, n := range upstreamNames {
			if strings.Contains(string(body), n) {
				t.Errorf("%s: the body names the upstream: %.200q", what, body)
			}
		}
	}
	send := func(method, path, tok string, hdr ...string) {
		t.Helper()
		req, _ := http.NewRequest(method, w.proxy.URL+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := noRedirects.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		check(method+" "+path, resp, body)
	}
	mt, _ := img.MediaType()
	send(http.MethodGet, "/v2/", "")
	tok := login(t, http.DefaultClient, w, robotUser, robotPass)
	for round := range 2 {
		send(http.MethodGet, "/v2/", tok)
		send(http.MethodGet, "/v2/"+repo+"/tags/list", tok)
		send(http.MethodGet, "/v2/"+repo+"/tags/list?n=100&last=t-050", tok)
		send(http.MethodGet, "/v2/"+repo+"/manifests/img", tok, "Accept", string(mt))
		send(http.MethodHead, "/v2/"+repo+"/manifests/img", tok, "Accept", string(mt))
		send(http.MethodGet, "/v2/"+repo+"/manifests/no-such-tag", tok, "Accept", string(mt))
		send(http.MethodHead, "/v2/"+repo+"/blobs/"+ld.String(), tok)
		send(http.MethodGet, "/v2/"+repo+"/blobs/"+ld.String(), tok)
		send(http.MethodGet, "/v2/"+repo+"/manifests/img", "")
		if round == 0 {
			// New upstream keys: the function's cached token is refused
			// with quay's 401 and challenge, and retried.
			if err := w.up.Restart(); err != nil {
				t.Fatal(err)
			}
		}
	}
	w.assertUpstreamSawOnlyRobotTokens(tok)
	var refused bool
	for _, r := range w.up.requests() {
		refused = refused || (r.Status == 401 && strings.HasPrefix(r.Path, "/v2/"+repo+"/"))
	}
	if !refused {
		t.Error("the upstream never refused the stale token: the restart tested nothing")
	}
}

// TestRateLimitPassesThrough: behind quay an upstream 429 reaches the
// client with its Retry-After, and the next request is served.
func TestRateLimitPassesThrough(t *testing.T) {
	w := newWorld(t, quay)
	pushContent(t, w)
	tok := login(t, http.DefaultClient, w, robotUser, robotPass)
	manifest := "/v2/" + repo + "/manifests/" + tag
	if resp := get(t, w, manifest, tok); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	w.quay.RateLimit(1, 7*time.Second)
	if resp := get(t, w, manifest, tok); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" {
		t.Errorf("rate limited upstream: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if resp := get(t, w, manifest, tok); resp.StatusCode != 200 {
		t.Errorf("after the limit: %d", resp.StatusCode)
	}
}

// TestRealmTrust: the robot's credentials go only to a token endpoint in
// the upstream's trust domain. Behind an upstream named by its IP literal,
// a challenge naming the same server's realm under another name
// (localhost) gets nothing: the pull is 503 and no token request is made;
// once the operator lists that host in QCI_UPSTREAM_TOKEN_HOSTS, the
// same pull works.
func TestRealmTrust(t *testing.T) {
	for _, listed := range []bool{false, true} {
		t.Run(fmt.Sprintf("listed=%v", listed), func(t *testing.T) {
			var realmHost string
			w := newWorldWith(t, quay, func(w *world) map[string]string {
				realmHost = "localhost:" + strings.TrimPrefix(w.quay.Host(), "127.0.0.1:")
				if !listed {
					return nil
				}
				return map[string]string{"QCI_UPSTREAM_TOKEN_HOSTS": realmHost}
			})
			pushContent(t, w)
			w.quay.SetRealmHost(realmHost)
			tok := login(t, http.DefaultClient, w, robotUser, robotPass)
			resp := get(t, w, "/v2/"+repo+"/manifests/"+tag, tok)
			var tokenRequests int
			for _, r := range w.up.requests() {
				if r.Path == "/v2/auth" {
					tokenRequests++
					if !listed {
						t.Errorf("a token request reached an untrusted realm: %s %s (Authorization %v)", r.Method, r.Path, r.Header.Get("Authorization") != "")
					}
				}
			}
			if listed {
				if resp.StatusCode != 200 || tokenRequests != 1 {
					t.Errorf("realm on a listed host: %d, %d token requests", resp.StatusCode, tokenRequests)
				}
				w.assertUpstreamSawOnlyRobotTokens(tok)
			} else if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("realm outside the trust domain: %d, want 503", resp.StatusCode)
			}
		})
	}
}
