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
// ("ci/ci-operator") as the image-stream repositories name them; an empty
// entry is neither. It lists every bad entry in one *OpenError.
func ParseOpen(entries []string) (Open, error) {
	var o Open
	var bad []string
	for _, e := range entries {
		if s, ok := registry.ParseImageStream(e); ok {
			o.streams = append(o.streams, s)
			continue
		}
		if registry.ValidNamespace(e) {
			o.namespaces = append(o.namespaces, e)
			continue
		}
		bad = append(bad, fmt.Sprintf("%q is neither a namespace nor <namespace>/<image stream> (a name without \"_\")", e))
	}
	if len(bad) > 0 {
		return Open{}, &OpenError{Problems: bad}
	}
	return o, nil
}

// OpenError lists the entries ParseOpen refused, one problem each, in
// their order.
type OpenError struct{ Problems []string }

// Error joins the problems into one message.
func (e *OpenError) Error() string { return "open images: " + strings.Join(e.Problems, "; ") }

// Allows reports whether s is open: its namespace, or s itself, is listed.
func (o Open) Allows(s registry.ImageStream) bool {
	return slices.Contains(o.namespaces, s.Namespace) || slices.Contains(o.streams, s)
}
