package registry

import (
	"errors"
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
		if !ValidRepository(name) {
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
	if !ValidRepository(name) {
		return Route{}, ErrNameInvalid
	}
	r.Repository, r.Reference = name, ref
	if !validDigest(ref) && (r.Kind != KindManifest || !validTag(ref)) {
		return r, ErrReferenceInvalid
	}
	return r, nil
}

// ValidRepository reports whether name is a repository name of the
// distribution spec: path components of [a-z0-9]+ joined by ".", "_", "__"
// or runs of "-", separated by "/", at most 255 bytes.
func ValidRepository(name string) bool {
	if name == "" || len(name) > maxNameLen {
		return false
	}
	for c := range strings.SplitSeq(name, "/") {
		if !validComponent(c) {
			return false
		}
	}
	return true
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// validComponent matches [a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*.
func validComponent(c string) bool {
	if c == "" || !isLowerAlnum(c[0]) || !isLowerAlnum(c[len(c)-1]) {
		return false
	}
	for i := 1; i < len(c); {
		if isLowerAlnum(c[i]) {
			i++
			continue
		}
		// a separator: ".", "_", "__" or "-"+, then an alphanumeric
		j := i
		switch c[i] {
		case '.':
			j++
		case '_':
			j++
			if j < len(c) && c[j] == '_' {
				j++
			}
		case '-':
			for j < len(c) && c[j] == '-' {
				j++
			}
		default:
			return false
		}
		if j >= len(c) || !isLowerAlnum(c[j]) {
			return false
		}
		i = j
	}
	return true
}

// validTag matches [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(isLowerAlnum(c) || 'A' <= c && c <= 'Z' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// validDigest matches [a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+, at
// most 256 bytes.
func validDigest(d string) bool {
	colon := strings.IndexByte(d, ':')
	if colon <= 0 || colon == len(d)-1 || len(d) > 256 {
		return false
	}
	alg, enc := d[:colon], d[colon+1:]
	if !isLowerAlnum(alg[0]) || !isLowerAlnum(alg[len(alg)-1]) {
		return false
	}
	for i := 1; i < len(alg); i++ {
		c := alg[i]
		if c == '.' || c == '+' || c == '_' || c == '-' {
			if !isLowerAlnum(alg[i+1]) { // the last byte is alphanumeric, so i+1 exists
				return false
			}
			continue
		}
		if !isLowerAlnum(c) {
			return false
		}
	}
	for i := 0; i < len(enc); i++ {
		c := enc[i]
		if !(isLowerAlnum(c) || 'A' <= c && c <= 'Z' || c == '=' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
