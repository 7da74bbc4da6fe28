package registry

import (
	"errors"
	"regexp"
	"strings"
)

// Kind says which route of the distribution API a path is.
type Kind int

// The routes qci-appci serves.
const (
	KindBase      Kind = iota + 1 // /v2/
	KindAuth                      // /v2/auth
	KindManifest                  // /v2/<name>/manifests/<reference>
	KindBlob                      // /v2/<name>/blobs/<digest>
	KindTags                      // /v2/<name>/tags/list
	KindReferrers                 // /v2/<name>/referrers/<digest>
)

// Route is a parsed /v2/ path.
type Route struct {
	Kind       Kind
	Repository string // empty for KindBase and KindAuth
	Reference  string // tag or digest; empty for KindTags
}

// Path errors. ErrNotRoute and ErrNameInvalid leave no repository to name in
// a challenge; ErrReferenceInvalid does (the route's Repository is set).
var (
	ErrNotRoute         = errors.New("not a registry route served here")
	ErrNameInvalid      = errors.New("invalid repository name")
	ErrReferenceInvalid = errors.New("invalid tag or digest")
)

var (
	componentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE       = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	digestRE    = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$`)
)

// maxNameLen bounds a repository name, as the distribution spec does.
const maxNameLen = 255

// ParsePath parses the raw, still escaped, request path (never a cleaned
// one). Anything that is not exactly one of the routes above is an error:
// percent-escapes (%2F and every other), empty, "." and ".." segments, a
// trailing slash, and names outside the distribution grammar. On
// ErrReferenceInvalid the returned route still names the repository.
func ParsePath(raw string) (Route, error) {
	switch raw {
	case "/v2/", "/v2":
		return Route{Kind: KindBase}, nil
	case "/v2/auth":
		return Route{Kind: KindAuth}, nil
	}
	rest, ok := strings.CutPrefix(raw, "/v2/")
	if !ok || strings.IndexByte(rest, '%') >= 0 {
		return Route{}, ErrNotRoute
	}
	if name, ok := strings.CutSuffix(rest, "/tags/list"); ok {
		if !validName(name) {
			return Route{}, ErrNameInvalid
		}
		return Route{Kind: KindTags, Repository: name}, nil
	}
	slash := strings.LastIndexByte(rest, '/')
	if slash < 0 {
		return Route{}, ErrNotRoute
	}
	ref := rest[slash+1:]
	head := rest[:slash]
	slash = strings.LastIndexByte(head, '/')
	if slash < 0 {
		return Route{}, ErrNotRoute
	}
	name, verb := head[:slash], head[slash+1:]
	var r Route
	switch verb {
	case "manifests":
		r.Kind = KindManifest
	case "blobs":
		r.Kind = KindBlob
	case "referrers":
		r.Kind = KindReferrers
	default:
		return Route{}, ErrNotRoute
	}
	if !validName(name) {
		return Route{}, ErrNameInvalid
	}
	r.Repository, r.Reference = name, ref
	digest := digestRE.MatchString(ref) && len(ref) <= 256
	if !digest && (r.Kind != KindManifest || !tagRE.MatchString(ref)) {
		return r, ErrReferenceInvalid
	}
	return r, nil
}

func validName(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for _, c := range strings.Split(name, "/") {
		if !componentRE.MatchString(c) {
			return false
		}
	}
	return true
}
