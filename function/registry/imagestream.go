package registry

import (
	"errors"
	"strings"
)

// Mapping errors.
var (
	// ErrNameUnknown: the repository is neither the upstream repository nor
	// an image stream that maps to it.
	ErrNameUnknown = errors.New("repository not served here")
	// ErrTagUnmapped: the image stream's tag has no unambiguous upstream tag.
	ErrTagUnmapped = errors.New("tag has no upstream tag")
)

// maxTagLen is the longest tag of the distribution reference grammar.
const maxTagLen = 128

// maxNamespaceLen is a Kubernetes namespace's limit (a DNS-1123 label).
const maxNamespaceLen = 63

// ImageStream names an image stream of the mirror, served as the
// repository "<Namespace>/<Name>". Its tag T is the upstream repository's
// tag "<Namespace>_<Name>_<T>", the way openshift/ci-tools mirrors app.ci's
// image streams into one quay.io repository.
//
// That encoding is only reversible without "_" in the name and the tag.
// A namespace never holds one (a DNS-1123 label), but OpenShift allows a
// single "_" between the alphanumerics of an image stream name
// (ValidateImageStreamName: a path segment matching
// [a-z0-9]+(?:[._-][a-z0-9]+)*), and a tag may hold any number
// ([\w][\w.-]{0,127}). The upstream tag "ci_a_b_c" is then both a:b_c and
// a_b:c, and a review that allows the image stream a would open a_b's
// image. So image-stream repositories serve only names and tags without
// "_": every served tag decodes one way, and an image stream or tag with
// "_" is reachable only through the upstream repository itself, under its
// namespace-wide review.
type ImageStream struct {
	Namespace, Name string
}

// Repository is the image stream's repository name, "<ns>/<name>".
func (s ImageStream) Repository() string { return s.Namespace + "/" + s.Name }

// TagPrefix is what every upstream tag of the image stream starts with,
// "<ns>_<name>_".
func (s ImageStream) TagPrefix() string { return s.Namespace + "_" + s.Name + "_" }

// UpstreamTag is the upstream tag of the image stream's tag, or
// ErrTagUnmapped when tag holds "_" or the upstream tag would be longer
// than a tag may be. tag must already be a valid tag.
func (s ImageStream) UpstreamTag(tag string) (string, error) {
	up := s.TagPrefix() + tag
	if strings.IndexByte(tag, '_') >= 0 || len(up) > maxTagLen {
		return "", ErrTagUnmapped
	}
	return up, nil
}

// TagOf is the image stream's tag of an upstream tag: ok only when
// upstreamTag starts with TagPrefix and the rest is a tag without "_".
func (s ImageStream) TagOf(upstreamTag string) (string, bool) {
	t, ok := strings.CutPrefix(upstreamTag, s.TagPrefix())
	if !ok || t == "" || strings.IndexByte(t, '_') >= 0 || !validTag(t) {
		return "", false
	}
	return t, true
}

// ParseImageStream parses an image-stream repository "<ns>/<name>": ns a
// DNS-1123 label (Kubernetes namespaces: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at
// most 63 bytes), name an OpenShift image stream name without "_" (see
// ImageStream), and short enough that "<ns>_<name>_" leaves room for a
// one-byte tag in an upstream tag.
func ParseImageStream(repository string) (ImageStream, bool) {
	ns, name, ok := strings.Cut(repository, "/")
	if !ok || !ValidNamespace(ns) || !validStreamName(name) || len(ns)+len(name)+3 > maxTagLen {
		return ImageStream{}, false
	}
	return ImageStream{Namespace: ns, Name: name}, true
}

// ValidNamespace reports whether ns is a Kubernetes namespace name: a
// DNS-1123 label, [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63 bytes.
func ValidNamespace(ns string) bool {
	if ns == "" || len(ns) > maxNamespaceLen || !isLowerAlnum(ns[0]) || !isLowerAlnum(ns[len(ns)-1]) {
		return false
	}
	for i := 0; i < len(ns); i++ {
		if !isLowerAlnum(ns[i]) && ns[i] != '-' {
			return false
		}
	}
	return true
}

// validStreamName matches [a-z0-9]+(?:[.-][a-z0-9]+)*: OpenShift's image
// stream name grammar without "_".
func validStreamName(name string) bool {
	if name == "" || !isLowerAlnum(name[0]) || !isLowerAlnum(name[len(name)-1]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if isLowerAlnum(c) {
			continue
		}
		if (c != '.' && c != '-') || !isLowerAlnum(name[i+1]) { // the last byte is alphanumeric
			return false
		}
	}
	return true
}

// Target is where a checked route goes upstream.
type Target struct {
	// Route is the upstream route: the upstream repository, and the
	// upstream tag for a manifest by tag.
	Route Route
	// Stream is the image stream of the path; zero for the upstream
	// repository itself.
	Stream ImageStream
}

// IsStream reports whether the target came from an image-stream path.
func (t Target) IsStream() bool { return t.Stream.Name != "" }

// Mapping maps the repositories of our paths onto the one upstream
// repository.
type Mapping struct {
	// Upstream is the upstream repository, served under its own name.
	Upstream string
}

// Map maps a parsed route (not KindBase or KindAuth) to its upstream
// target. The upstream repository maps to itself, whatever its name looks
// like; any other repository must be an image stream (ErrNameUnknown when
// not). A manifest by tag of an image stream becomes its upstream tag
// (ErrTagUnmapped when it has none); digests, blobs, referrers and
// tags/list go to the upstream repository unchanged.
func (m Mapping) Map(rt Route) (Target, error) {
	if rt.Repository == m.Upstream {
		return Target{Route: rt}, nil
	}
	s, ok := ParseImageStream(rt.Repository)
	if !ok {
		return Target{}, ErrNameUnknown
	}
	up := Route{Kind: rt.Kind, Repository: m.Upstream, Reference: rt.Reference}
	if rt.Kind == KindManifest && !validDigest(rt.Reference) {
		tag, err := s.UpstreamTag(rt.Reference)
		if err != nil {
			return Target{}, err
		}
		up.Reference = tag
	}
	return Target{Route: up, Stream: s}, nil
}

// Path is the route's escaped /v2/ path.
func (rt Route) Path() string {
	switch rt.Kind {
	case KindBase:
		return "/v2/"
	case KindAuth:
		return "/v2/auth"
	case KindManifest:
		return "/v2/" + rt.Repository + "/manifests/" + rt.Reference
	case KindBlob:
		return "/v2/" + rt.Repository + "/blobs/" + rt.Reference
	case KindReferrers:
		return "/v2/" + rt.Repository + "/referrers/" + rt.Reference
	case KindTags:
		return "/v2/" + rt.Repository + "/tags/list"
	}
	return ""
}

// Serves reports whether repository is the upstream repository or an
// image stream.
func (m Mapping) Serves(repository string) bool {
	if repository == m.Upstream {
		return true
	}
	_, ok := ParseImageStream(repository)
	return ok
}
