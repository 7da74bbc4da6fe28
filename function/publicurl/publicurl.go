// Package publicurl says under which URL a request reached qci-appci: the
// configured exposed URL, else the request's Host and X-Forwarded-Proto. Its
// host is the token service, issuer and audience.
package publicurl

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Resolver resolves the public scheme and host of requests.
type Resolver struct {
	scheme, host string // fixed when set
}

// New returns a Resolver; exposed may be empty (per-request Host).
func New(exposed string) (Resolver, error) {
	if exposed == "" {
		return Resolver{}, nil
	}
	u, err := url.Parse(exposed)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return Resolver{}, fmt.Errorf("publicurl: %q is not an http(s) URL", exposed)
	}
	return FromURL(u), nil
}

// FromURL returns the Resolver of the exposed URL u, already parsed and
// checked to be http or https with a host, as New checks it.
func FromURL(u *url.URL) Resolver { return Resolver{scheme: u.Scheme, host: u.Host} }

// Fixed reports whether the public URL is configured rather than per request.
func (r Resolver) Fixed() bool { return r.host != "" }

// Resolve returns the public scheme and host (with port, if any) of req.
// ok is false when the request's Host is not a plausible host name.
func (r Resolver) Resolve(req *http.Request) (scheme, host string, ok bool) {
	if r.host != "" {
		return r.scheme, r.host, true
	}
	host = req.Host
	if !validHost(host) {
		return "", "", false
	}
	scheme = "http"
	if req.TLS != nil {
		scheme = "https"
	}
	if p := req.Header.Get("X-Forwarded-Proto"); p != "" {
		p, _, _ = strings.Cut(p, ",")
		switch p = strings.TrimSpace(strings.ToLower(p)); p {
		case "http", "https":
			scheme = p
		}
	}
	return scheme, host, true
}

// validHost accepts host names, IPv4 and bracketed IPv6, with a port.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.', c == '-', c == ':', c == '[', c == ']', c == '_':
		default:
			return false
		}
	}
	return true
}
