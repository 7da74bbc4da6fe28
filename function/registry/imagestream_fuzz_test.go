package registry_test

import (
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/registry"
)

// FuzzImageStreamTagsDecodeOneWay: every upstream tag an image stream
// serves decodes back to that stream and tag only; no other image stream
// that parses claims it. This is why names and tags with "_" are refused.
func FuzzImageStreamTagsDecodeOneWay(f *testing.F) {
	for _, c := range [][3]string{
		{"ci", "ci-operator", "latest"}, {"ci", "a", "b_c"}, {"ci", "a_b", "c"}, {"ocp", "4.17", "base"},
		{"a-b", "c.d", "v1.0-rc"}, {"ci", "ci-operator-x", "latest"},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, ns, name, tag string) {
		s, ok := registry.ParseImageStream(ns + "/" + name)
		if !ok {
			return
		}
		if s.Namespace != ns || s.Name != name || s.Repository() != ns+"/"+name {
			t.Fatalf("ParseImageStream(%q) = %+v", ns+"/"+name, s)
		}
		up, err := s.UpstreamTag(tag)
		if err != nil {
			return
		}
		if got, ok := s.TagOf(up); tag != "" && validTag(tag) && (!ok || got != tag) {
			t.Fatalf("TagOf(UpstreamTag(%q)) = %q, %v", tag, got, ok)
		}
		// Any other split of up into <ns'>_<name'>_<tag'> that parses
		// and maps back to up must be the same one.
		for i := 0; i < len(up); i++ {
			for j := i + 1; j < len(up); j++ {
				if up[i] != '_' || up[j] != '_' {
					continue
				}
				o, ok := registry.ParseImageStream(up[:i] + "/" + up[i+1:j])
				if !ok {
					continue
				}
				if ot, ok := o.TagOf(up); ok && (o != s || ot != tag) {
					t.Fatalf("%q is both %s:%s and %s:%s", up, s.Repository(), tag, o.Repository(), ot)
				}
			}
		}
	})
}

// validTag matches the distribution tag grammar, as ParsePath checks it
// before any mapping (a reference with ":" is a digest, not a tag).
func validTag(t string) bool {
	_, err := registry.ParsePath("/v2/a/b/manifests/" + t)
	return err == nil && !strings.Contains(t, ":")
}
