package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/qci-appci/qci-appci/function/registry"
)

// Open are the namespaces and image streams that every authenticated
// cluster user may pull without a review (on app.ci, what a RoleBinding of
// system:authenticated grants, as in the ocp namespace). The zero value
// opens nothing.
type Open struct {
	namespaces []string
	streams    []registry.ImageStream
}

// ParseOpen parses entries, each a namespace ("ci") or an image stream
// ("ci/ci-operator") as the image-stream repositories name them. It lists
// every bad entry in one error.
func ParseOpen(entries []string) (Open, error) {
	var o Open
	var bad []string
	for _, e := range entries {
		if e == "" {
			continue
		}
		if !strings.Contains(e, "/") {
			if !registry.ValidNamespace(e) {
				bad = append(bad, fmt.Sprintf("%q is not a namespace", e))
				continue
			}
			o.namespaces = append(o.namespaces, e)
			continue
		}
		s, ok := registry.ParseImageStream(e)
		if !ok {
			bad = append(bad, fmt.Sprintf("%q is not <namespace>/<image stream> (a name without \"_\")", e))
			continue
		}
		o.streams = append(o.streams, s)
	}
	if len(bad) > 0 {
		return Open{}, fmt.Errorf("open images: %s", strings.Join(bad, "; "))
	}
	return o, nil
}

// Allows reports whether s is open: its namespace, or s itself, is listed.
func (o Open) Allows(s registry.ImageStream) bool {
	return slices.Contains(o.namespaces, s.Namespace) || slices.Contains(o.streams, s)
}
