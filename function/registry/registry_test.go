package registry_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/registry"
)

func TestParsePath(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	ok := []struct {
		path string
		want registry.Route
	}{
		{"/v2/", registry.Route{Kind: registry.KindBase}},
		{"/v2", registry.Route{Kind: registry.KindBase}},
		{"/v2/auth", registry.Route{Kind: registry.KindAuth}},
		{"/v2/openshift/ci/manifests/ci_ci-operator_latest", registry.Route{Kind: registry.KindManifest, Repository: "openshift/ci", Reference: "ci_ci-operator_latest"}},
		{"/v2/openshift/ci/manifests/" + digest, registry.Route{Kind: registry.KindManifest, Repository: "openshift/ci", Reference: digest}},
		{"/v2/openshift/ci/blobs/" + digest, registry.Route{Kind: registry.KindBlob, Repository: "openshift/ci", Reference: digest}},
		{"/v2/openshift/ci/referrers/" + digest, registry.Route{Kind: registry.KindReferrers, Repository: "openshift/ci", Reference: digest}},
		{"/v2/openshift/ci/tags/list", registry.Route{Kind: registry.KindTags, Repository: "openshift/ci"}},
		{"/v2/a/b/c/manifests/v1.0", registry.Route{Kind: registry.KindManifest, Repository: "a/b/c", Reference: "v1.0"}},
		{"/v2/ci/manifests/latest", registry.Route{Kind: registry.KindManifest, Repository: "ci", Reference: "latest"}},
	}
	for _, tc := range ok {
		got, err := registry.ParsePath(tc.path)
		if err != nil || got != tc.want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", tc.path, got, err, tc.want)
		}
	}
	bad := []struct {
		path string
		want error
	}{
		{"/v2/_catalog", registry.ErrNotRoute},
		{"/v2/openshift/ci/../other/manifests/latest", registry.ErrNameInvalid},
		{"/v2/openshift/../openshift/ci/manifests/latest", registry.ErrNameInvalid},
		{"/v2/openshift%2Fci/manifests/latest", registry.ErrNotRoute},
		{"/v2/openshift/ci/manifests/%2e%2e", registry.ErrNotRoute},
		{"/v2/openshift//ci/manifests/latest", registry.ErrNameInvalid},
		{"//v2/openshift/ci/manifests/latest", registry.ErrNotRoute},
		{"/v2//openshift/ci/manifests/latest", registry.ErrNameInvalid},
		{"/v2/openshift/ci/./manifests/latest", registry.ErrNameInvalid},
		{"/v2/openshift/ci/manifests/", registry.ErrReferenceInvalid},
		{"/v2/openshift/ci/manifests/..", registry.ErrReferenceInvalid},
		{"/v2/openshift/ci/blobs/latest", registry.ErrReferenceInvalid},
		{"/v2/openshift/ci/blobs/uploads/", registry.ErrNotRoute},
		{"/v2/openshift/ci/tags/list/", registry.ErrNotRoute},
		{"/v2/OpenShift/ci/manifests/latest", registry.ErrNameInvalid},
		{"/v2/openshift/ci/manifests", registry.ErrNotRoute},
		{"/v3/openshift/ci/manifests/latest", registry.ErrNotRoute},
		{"/v2/auth/", registry.ErrNotRoute},
		{"/v2/" + strings.Repeat("a/", 200) + "manifests/latest", registry.ErrNameInvalid},
	}
	for _, tc := range bad {
		_, err := registry.ParsePath(tc.path)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParsePath(%q) error = %v, want %v", tc.path, err, tc.want)
		}
	}
}

func TestParseScopes(t *testing.T) {
	got := registry.ParseScopes([]string{
		"repository:openshift/ci:pull repository:other/repo:pull,push",
		"registry:catalog:*",
		"repository:localhost:5000/x:pull",
		"broken", "repository::pull", "repository:x:", ":x:pull",
	})
	want := []registry.Scope{
		{Type: "repository", Name: "openshift/ci", Actions: []string{"pull"}},
		{Type: "repository", Name: "other/repo", Actions: []string{"pull", "push"}},
		{Type: "registry", Name: "catalog", Actions: []string{"*"}},
		{Type: "repository", Name: "localhost:5000/x", Actions: []string{"pull"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseScopes = %+v\nwant %+v", got, want)
	}
}

func TestWriteError(t *testing.T) {
	rec := httptest.NewRecorder()
	registry.WriteError(rec, http.StatusServiceUnavailable, registry.CodeUnavailable, "down \"now\" <script>\n")
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("status %d headers %v", rec.Code, rec.Header())
	}
	var body struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", rec.Body.String(), err)
	}
	if len(body.Errors) != 1 || body.Errors[0].Code != "UNAVAILABLE" || body.Errors[0].Message != "down \"now\" <script>\n" {
		t.Errorf("body = %+v", body)
	}
}

func TestWriteChallenge(t *testing.T) {
	rec := httptest.NewRecorder()
	registry.WriteChallenge(rec, "https://r.example/v2/auth", "r.example", "repository:openshift/ci:pull", registry.ChallengeInsufficientScope, "no")
	want := `Bearer realm="https://r.example/v2/auth",service="r.example",scope="repository:openshift/ci:pull",error="insufficient_scope"`
	if got := rec.Header().Get("WWW-Authenticate"); got != want || rec.Code != 401 {
		t.Errorf("%d %q, want 401 %q", rec.Code, got, want)
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"/v2/", "/v2/openshift/ci/manifests/latest", "/v2/openshift/ci/blobs/sha256:00",
		"/v2/a/tags/list", "/v2/a/../b/manifests/x", "/v2/a%2Fb/manifests/x", "/v2//a/referrers/sha256:aa"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := registry.ParsePath(p)
		if err != nil {
			return
		}
		// Whatever parses is free of the tricks the proxy relies on it to refuse.
		for _, bad := range []string{"%", "//", "/./", "/../"} {
			if strings.Contains(p, bad) {
				t.Fatalf("ParsePath(%q) accepted %q: %+v", p, bad, r)
			}
		}
		if r.Repository != "" && (strings.HasPrefix(r.Repository, "/") || strings.HasSuffix(r.Repository, "/") || strings.Contains(r.Repository, "..")) {
			t.Fatalf("ParsePath(%q) gave repository %q", p, r.Repository)
		}
		if r.Kind == registry.KindManifest || r.Kind == registry.KindBlob || r.Kind == registry.KindReferrers {
			if r.Reference == "" || strings.ContainsAny(r.Reference, "/%") {
				t.Fatalf("ParsePath(%q) gave reference %q", p, r.Reference)
			}
		}
	})
}

func FuzzParseScopes(f *testing.F) {
	for _, s := range []string{"repository:openshift/ci:pull", "repository:a:pull,push registry:catalog:*", "a:b:c:d", "::", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, sc := range registry.ParseScopes([]string{s}) {
			if sc.Type == "" || sc.Name == "" || len(sc.Actions) == 0 || strings.ContainsAny(sc.Type, ": \t\n") {
				t.Fatalf("ParseScopes(%q) gave %+v", s, sc)
			}
			for _, a := range sc.Actions {
				if a == "" || strings.ContainsAny(a, ", \t\n:") {
					t.Fatalf("ParseScopes(%q) gave action %q", s, a)
				}
			}
		}
	})
}

func BenchmarkParsePath(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := registry.ParsePath("/v2/openshift/ci/blobs/sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"); err != nil {
			b.Fatal(err)
		}
	}
}

// The hand-written matchers agree with the distribution spec's grammar,
// written once more as regular expressions.
func FuzzMatchersAgreeWithGrammar(f *testing.F) {
	component := regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tag := regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digest := regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
	for _, s := range []string{"openshift", "a__b", "a___b", "a-.b", "a--b", "v1.0", ".x", "sha256:ab", "a+b.c:X=_-", "a+:b", ":x", "x:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := registry.ValidRepository(s), s != "" && len(s) <= 255 && allMatch(component, s); got != want {
			t.Fatalf("ValidRepository(%q) = %v, grammar says %v", s, got, want)
		}
		r, err := registry.ParsePath("/v2/a/manifests/" + s)
		okRef := err == nil && r.Reference == s
		wantRef := !strings.ContainsAny(s, "/%") && (tag.MatchString(s) || (digest.MatchString(s) && len(s) <= 256))
		if okRef != wantRef {
			t.Fatalf("reference %q accepted=%v, grammar says %v (%v)", s, okRef, wantRef, err)
		}
	})
}

func allMatch(re *regexp.Regexp, name string) bool {
	for _, c := range strings.Split(name, "/") {
		if !re.MatchString(c) {
			return false
		}
	}
	return true
}

func BenchmarkParseScopes(b *testing.B) {
	req := []string{"repository:openshift/ci:pull repository:openshift/other:pull,push"}
	b.ReportAllocs()
	for b.Loop() {
		if s := registry.ParseScopes(req); len(s) != 2 {
			b.Fatal(s)
		}
	}
}
