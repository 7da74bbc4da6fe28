package proxy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/qci-appci/qci-appci/function/registry"
)

// recordingUpstream answers every request 200 with its path, and keeps the
// paths it was asked.
type recordingUpstream struct {
	mu    sync.Mutex
	paths []string
}

func (u *recordingUpstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.paths = append(u.paths, r.URL.RequestURI())
	u.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(r.URL.Path))
}

func (u *recordingUpstream) got() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.paths)
}

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestImageStreamPathsMapUpstream: an image stream's manifest by tag is the
// upstream's <ns>_<name>_<tag>; its digests, blobs and referrers are the
// upstream repository's; the upstream repository is served as it was.
func TestImageStreamPathsMapUpstream(t *testing.T) {
	up := &recordingUpstream{}
	tp := newTestProxy(t, up.serve)
	tp.tok = tp.token(t, registry.PullScope("ci/ci-operator"), registry.PullScope(repo))
	for path, want := range map[string]string{
		"/v2/ci/ci-operator/manifests/latest":          "/v2/openshift/ci/manifests/ci_ci-operator_latest",
		"/v2/ci/ci-operator/manifests/" + testDigest:   "/v2/openshift/ci/manifests/" + testDigest,
		"/v2/ci/ci-operator/blobs/" + testDigest:       "/v2/openshift/ci/blobs/" + testDigest,
		"/v2/ci/ci-operator/referrers/" + testDigest:   "/v2/openshift/ci/referrers/" + testDigest,
		"/v2/openshift/ci/manifests/ci_ci-operator_v1": "/v2/openshift/ci/manifests/ci_ci-operator_v1",
	} {
		resp := tp.do(t, http.MethodGet, path, nil)
		if body := readAll(t, resp); resp.StatusCode != 200 || body != want {
			t.Errorf("GET %s: %d, upstream path %q; want %q", path, resp.StatusCode, body, want)
		}
	}
}

// TestImageStreamNamesThatDoNotMapStayHere: a repository that is neither
// the upstream one nor an image stream, and a tag with no unambiguous
// mirror tag, are 404 without an upstream request.
func TestImageStreamNamesThatDoNotMapStayHere(t *testing.T) {
	up := &recordingUpstream{}
	tp := newTestProxy(t, up.serve)
	tp.tok = tp.token(t, registry.PullScope("ci/ci-operator"), registry.PullScope("ci/ci_operator"),
		registry.PullScope("a/b/c"), registry.PullScope("ci"))
	for path, code := range map[string]string{
		"/v2/ci/manifests/latest":                                  registry.CodeNameUnknown,
		"/v2/a/b/c/manifests/latest":                               registry.CodeNameUnknown,
		"/v2/ci/ci_operator/manifests/latest":                      registry.CodeNameUnknown, // "_" in a name: ambiguous
		"/v2/ci/ci_operator/blobs/" + testDigest:                   registry.CodeNameUnknown,
		"/v2/ci/ci_operator/tags/list":                             registry.CodeNameUnknown,
		"/v2/ci/ci-operator/manifests/a_b":                         registry.CodeManifestUnknown, // "_" in a tag: ambiguous
		"/v2/ci/ci-operator/manifests/" + strings.Repeat("x", 128): registry.CodeManifestUnknown,
	} {
		resp := tp.do(t, http.MethodGet, path, nil)
		body := readAll(t, resp)
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `"code":"`+code+`"`) {
			t.Errorf("GET %s: %d %s; want 404 %s", path, resp.StatusCode, body, code)
		}
	}
	if got := up.got(); len(got) != 0 {
		t.Errorf("upstream was asked %q", got)
	}
}

// TestImageStreamChallengeNamesItsScope: the challenge of an image stream's
// path names that image stream's scope, and a token for another image
// stream or for the upstream repository does not open it.
func TestImageStreamChallengeNamesItsScope(t *testing.T) {
	up := &recordingUpstream{}
	tp := newTestProxy(t, up.serve)
	const path = "/v2/ci/ci-operator/manifests/latest"
	for name, auth := range map[string]string{
		"no token":                      "",
		"the upstream repository's":     "Bearer " + tp.token(t, registry.PullScope(repo)),
		"another image stream's":        "Bearer " + tp.token(t, registry.PullScope("ci/other")),
		"another namespace's stream":    "Bearer " + tp.token(t, registry.PullScope("ocp/ci-operator")),
		"push, not pull, on the stream": "Bearer " + tp.token(t, registry.Scope{Type: "repository", Name: "ci/ci-operator", Actions: []string{"push"}}),
	} {
		req, _ := http.NewRequest(http.MethodGet, tp.px.URL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(ch, `scope="repository:ci/ci-operator:pull"`) {
			t.Errorf("%s: %d %q; want 401 naming repository:ci/ci-operator:pull", name, resp.StatusCode, ch)
		}
	}
	if got := up.got(); len(got) != 0 {
		t.Errorf("upstream was asked %q", got)
	}
	tp.tok = tp.token(t, registry.PullScope("ci/ci-operator"))
	if resp := tp.do(t, http.MethodGet, path, nil); resp.StatusCode != 200 {
		t.Errorf("with the stream's pull: %d", resp.StatusCode)
	}
	// and that token does not open the upstream repository itself
	resp := tp.do(t, http.MethodGet, "/v2/openshift/ci/manifests/ci_ci-operator_latest", nil)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:openshift/ci:pull"`) {
		t.Errorf("upstream repository with a stream token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

// tagsUpstream serves tags/list of a sorted tag set with n and last as
// distribution does (a Link when more may follow), and records each query.
type tagsUpstream struct {
	tags    []string
	mu      sync.Mutex
	queries []url.Values
}

func (u *tagsUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v2/"+repo+"/tags/list" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	u.mu.Lock()
	u.queries = append(u.queries, q)
	u.mu.Unlock()
	n, err := strconv.Atoi(q.Get("n"))
	if err != nil || n <= 0 {
		http.Error(w, "the test upstream wants n", http.StatusBadRequest)
		return
	}
	i := sort.SearchStrings(u.tags, q.Get("last"))
	if i < len(u.tags) && u.tags[i] == q.Get("last") {
		i++
	}
	page := u.tags[i:min(i+n, len(u.tags))]
	if i+n < len(u.tags) {
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?last=%s&n=%d>; rel="next"`, repo, url.QueryEscape(page[len(page)-1]), n))
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": page})
}

// TestImageStreamTagsPage: tags/list of an image stream lists that stream's
// tags only, pages with n and last and a Link on our host, and starts
// reading the upstream at the stream's prefix.
func TestImageStreamTagsPage(t *testing.T) {
	var tags []string
	var want []string
	for i := range 250 {
		tg := fmt.Sprintf("v%03d", i)
		want = append(want, tg)
		tags = append(tags, "ci_ci-operator_"+tg)
	}
	tags = append(tags,
		"aaa_first_latest",        // before the prefix
		"ci_ci-operator-x_latest", // another stream, sorts before "_"
		"ci_ci-operator_a_b",      // ambiguous: never listed
		"ci_ci-operatorz_latest",  // another stream, after
		"zzz_last_latest")
	sort.Strings(tags)
	want = append(want[:0:0], want...)
	up := &tagsUpstream{tags: tags}
	tp := newTestProxy(t, up.serve)
	tp.tok = tp.token(t, registry.PullScope("ci/ci-operator"))

	var got []string
	next := "/v2/ci/ci-operator/tags/list?n=120"
	pages := 0
	for next != "" {
		pages++
		resp := tp.do(t, http.MethodGet, next, nil)
		var list struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || resp.StatusCode != 200 || list.Name != "ci/ci-operator" {
			t.Fatalf("GET %s: %d %+v %v", next, resp.StatusCode, list, err)
		}
		got = append(got, list.Tags...)
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			u := strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
			pu, err := url.Parse(u)
			if err != nil || pu.Host != tp.host() || pu.Path != "/v2/ci/ci-operator/tags/list" || pu.Query().Get("n") != "120" {
				t.Fatalf("Link %q: not a next page on our host", link)
			}
			next = pu.RequestURI()
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages of %d tags %q...; want 3 pages of the 250 tags v000..v249", pages, len(got), got[:min(3, len(got))])
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if first := up.queries[0].Get("last"); first != "ci_ci-operator_" {
		t.Errorf("first upstream read after %q; want the stream's prefix", first)
	}
	for _, q := range up.queries {
		if q.Get("last") < "ci_ci-operator_" {
			t.Errorf("an upstream read started before the prefix: %v", q)
		}
	}
	if len(up.queries) > 6 {
		t.Errorf("%d upstream pages for 250 tags in pages of 100; want at most 6", len(up.queries))
	}
}

// TestImageStreamTagsEdges: n=0 asks nothing upstream; a bad n is 400; an
// image stream without tags is 404 NAME_UNKNOWN, but a last past its end
// is an empty page; HEAD has the headers only.
func TestImageStreamTagsEdges(t *testing.T) {
	up := &tagsUpstream{tags: []string{"ci_a_latest", "ci_b_v1", "ci_b_v2"}}
	tp := newTestProxy(t, up.serve)
	tp.tok = tp.token(t, registry.PullScope("ci/a"), registry.PullScope("ci/b"), registry.PullScope("ci/none"))
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{http.MethodGet, "/v2/ci/b/tags/list?n=0", 200, `{"name":"ci/b","tags":[]}`},
		{http.MethodGet, "/v2/ci/b/tags/list?n=x", 400, `"code":"PAGINATION_NUMBER_INVALID"`},
		{http.MethodGet, "/v2/ci/none/tags/list", 404, `"code":"NAME_UNKNOWN"`},
		{http.MethodGet, "/v2/ci/b/tags/list?last=v2", 200, `{"name":"ci/b","tags":[]}`},
		{http.MethodGet, "/v2/ci/b/tags/list", 200, `{"name":"ci/b","tags":["v1","v2"]}`},
		{http.MethodGet, "/v2/ci/b/tags/list?n=1", 200, `{"name":"ci/b","tags":["v1"]}`},
		{http.MethodHead, "/v2/ci/b/tags/list", 200, ``},
	} {
		up.mu.Lock()
		before := len(up.queries)
		up.mu.Unlock()
		resp := tp.do(t, tc.method, tc.path, nil)
		body := strings.TrimSpace(readAll(t, resp))
		if resp.StatusCode != tc.status || (tc.status == 200 && body != tc.body) || (tc.status != 200 && !strings.Contains(body, tc.body)) {
			t.Errorf("%s %s: %d %s; want %d %s", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		up.mu.Lock()
		asked := len(up.queries) - before
		up.mu.Unlock()
		if tc.path == "/v2/ci/b/tags/list?n=0" && asked != 0 {
			t.Errorf("n=0 asked the upstream %d times", asked)
		}
		if tc.path == "/v2/ci/b/tags/list?n=1" && !strings.Contains(resp.Header.Get("Link"), "last=v1") {
			t.Errorf("n=1: Link %q, want one after v1", resp.Header.Get("Link"))
		}
	}
}
