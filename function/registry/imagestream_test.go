package registry_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/registry"
)

func TestParseImageStream(t *testing.T) {
	ok := map[string]registry.ImageStream{
		"ci/ci-operator":               {Namespace: "ci", Name: "ci-operator"},
		"ocp/4.17":                     {Namespace: "ocp", Name: "4.17"},
		"ocp-private/secret":           {Namespace: "ocp-private", Name: "secret"},
		"a/b":                          {Namespace: "a", Name: "b"},
		strings.Repeat("n", 63) + "/x": {Namespace: strings.Repeat("n", 63), Name: "x"},
	}
	for repo, want := range ok {
		got, parsed := registry.ParseImageStream(repo)
		if !parsed || got != want || got.Repository() != repo {
			t.Errorf("ParseImageStream(%q) = %+v, %v; want %+v", repo, got, parsed, want)
		}
	}
	for _, repo := range []string{
		"ci",             // one component
		"a/b/c",          // three
		"ci/ci_operator", // "_" in the name: ambiguous upstream tags
		"c_i/x",          // "_" in a namespace (not a DNS-1123 label)
		"c.i/x",          // "." in a namespace
		"-ci/x", "ci-/x", // label must start and end alphanumeric
		strings.Repeat("n", 64) + "/x", // namespace over 63
		"ci/a--b",                      // image stream names take one separator
		"ci/a..b", "ci/.a", "ci/a.", "ci/", "/x",
		"ci/" + strings.Repeat("x", 124), // no room left for a tag in 128
		"CI/x", "ci/X",
	} {
		if s, parsed := registry.ParseImageStream(repo); parsed {
			t.Errorf("ParseImageStream(%q) = %+v; want no image stream", repo, s)
		}
	}
	// the longest name that still leaves a one-byte tag
	long := "ci/" + strings.Repeat("x", 123)
	s, parsed := registry.ParseImageStream(long)
	if !parsed {
		t.Fatalf("ParseImageStream(%q) failed", long)
	}
	if up, err := s.UpstreamTag("a"); err != nil || len(up) != 128 {
		t.Errorf("UpstreamTag = %q, %v; want 128 bytes", up, err)
	}
	if _, err := s.UpstreamTag("ab"); !errors.Is(err, registry.ErrTagUnmapped) {
		t.Errorf("UpstreamTag over 128 bytes: %v, want ErrTagUnmapped", err)
	}
}

func TestImageStreamTags(t *testing.T) {
	s := registry.ImageStream{Namespace: "ci", Name: "ci-operator"}
	if up, err := s.UpstreamTag("latest"); err != nil || up != "ci_ci-operator_latest" {
		t.Errorf("UpstreamTag(latest) = %q, %v", up, err)
	}
	if up, err := s.UpstreamTag("a_b"); !errors.Is(err, registry.ErrTagUnmapped) {
		t.Errorf("UpstreamTag(a_b) = %q, %v; want ErrTagUnmapped", up, err)
	}
	for up, want := range map[string]string{
		"ci_ci-operator_latest": "latest",
		"ci_ci-operator_v1.0-x": "v1.0-x",
	} {
		if got, ok := s.TagOf(up); !ok || got != want {
			t.Errorf("TagOf(%q) = %q, %v; want %q", up, got, ok, want)
		}
	}
	for _, up := range []string{
		"ci_ci-operator_",         // empty tag
		"ci_ci-operator_a_b",      // would also be ci/ci-operator_a:b
		"ci_ci-operator-x_latest", // another image stream
		"ci_ci-operator",          // no tag part
		"ocp_ci-operator_latest",  // another namespace
		"ci_ci-operator_.hidden",  // not a tag
	} {
		if got, ok := s.TagOf(up); ok {
			t.Errorf("TagOf(%q) = %q; want none", up, got)
		}
	}
}

func TestMapping(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	m := registry.Mapping{Upstream: "openshift/ci"}
	stream := registry.ImageStream{Namespace: "ci", Name: "ci-operator"}
	ok := []struct {
		in       registry.Route
		wantPath string
		stream   registry.ImageStream
	}{
		{registry.Route{Kind: registry.KindManifest, Repository: "ci/ci-operator", Reference: "latest"},
			"/v2/openshift/ci/manifests/ci_ci-operator_latest", stream},
		{registry.Route{Kind: registry.KindManifest, Repository: "ci/ci-operator", Reference: digest},
			"/v2/openshift/ci/manifests/" + digest, stream},
		{registry.Route{Kind: registry.KindBlob, Repository: "ci/ci-operator", Reference: digest},
			"/v2/openshift/ci/blobs/" + digest, stream},
		{registry.Route{Kind: registry.KindReferrers, Repository: "ci/ci-operator", Reference: digest},
			"/v2/openshift/ci/referrers/" + digest, stream},
		{registry.Route{Kind: registry.KindTags, Repository: "ci/ci-operator"},
			"/v2/openshift/ci/tags/list", stream},
		// the upstream repository is itself, even though it parses as an image stream
		{registry.Route{Kind: registry.KindManifest, Repository: "openshift/ci", Reference: "ci_ci-operator_latest"},
			"/v2/openshift/ci/manifests/ci_ci-operator_latest", registry.ImageStream{}},
	}
	for _, tc := range ok {
		got, err := m.Map(tc.in)
		if err != nil || got.Route.Path() != tc.wantPath || got.Stream != tc.stream || got.IsStream() != (tc.stream != registry.ImageStream{}) {
			t.Errorf("Map(%+v) = %+v (%s), %v; want %s, %+v", tc.in, got, got.Route.Path(), err, tc.wantPath, tc.stream)
		}
	}
	bad := []struct {
		in   registry.Route
		want error
	}{
		{registry.Route{Kind: registry.KindManifest, Repository: "ci", Reference: "latest"}, registry.ErrNameUnknown},
		{registry.Route{Kind: registry.KindManifest, Repository: "a/b/c", Reference: "latest"}, registry.ErrNameUnknown},
		{registry.Route{Kind: registry.KindBlob, Repository: "ci/ci_operator", Reference: digest}, registry.ErrNameUnknown},
		{registry.Route{Kind: registry.KindTags, Repository: "c_i/x"}, registry.ErrNameUnknown},
		{registry.Route{Kind: registry.KindManifest, Repository: "ci/ci-operator", Reference: "a_b"}, registry.ErrTagUnmapped},
	}
	for _, tc := range bad {
		if got, err := m.Map(tc.in); !errors.Is(err, tc.want) {
			t.Errorf("Map(%+v) = %+v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if !m.Serves("ci/ci-operator") || !m.Serves("openshift/ci") || m.Serves("a/b/c") || m.Serves("ci/a_b") {
		t.Error("Serves disagrees with Map")
	}
}
