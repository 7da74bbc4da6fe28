package upstream

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// ErrUntrustedRealm: a challenge or a token-request redirect names a token
// endpoint outside the upstream's trust domain; the robot credentials are
// not sent there.
var ErrUntrustedRealm = errors.New("token endpoint outside the upstream's trust domain")

// realmPolicy decides where the robot credentials may go: to a token
// endpoint in the upstream's own trust domain, as go-containerregistry's
// validateRealmURL does, or to a host the operator listed. Never to a realm
// merely because a challenge names it over https.
type realmPolicy struct {
	upstream *url.URL
	// hosts are the operator's extra token hosts, lower case: "host" matches
	// any port, "host:port" only that one.
	hosts []string
}

func newRealmPolicy(upstream *url.URL, hosts []string) realmPolicy {
	p := realmPolicy{upstream: upstream}
	for _, h := range hosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			p.hosts = append(p.hosts, h)
		}
	}
	return p
}

// check returns nil when u may receive the robot credentials:
//   - the upstream's own host and port, over the upstream's scheme or https;
//   - over https, a host name of the upstream's registrable domain (public
//     suffix plus one label: auth.docker.io for registry-1.docker.io);
//     never when either side is an IP literal, in any spelling (127.1,
//     0x7f.1, [::1]): an IP goes only to itself;
//   - over https, a host of the operator's list.
func (p realmPolicy) check(u *url.URL) error {
	if u == nil {
		return fmt.Errorf("%w: no URL", ErrUntrustedRealm)
	}
	if !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%w: %q is not an absolute URL", ErrUntrustedRealm, u.Redacted())
	}
	if u.User != nil {
		return fmt.Errorf("%w: %s carries user info", ErrUntrustedRealm, u.Redacted())
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "https" && scheme != "http" {
		return fmt.Errorf("%w: %s is neither https nor http", ErrUntrustedRealm, u.Redacted())
	}
	if sameHostPort(u, p.upstream) {
		if scheme == "https" || strings.EqualFold(p.upstream.Scheme, scheme) {
			return nil
		}
		return fmt.Errorf("%w: %s would downgrade the upstream's https to http", ErrUntrustedRealm, u.Redacted())
	}
	if scheme != "https" {
		return fmt.Errorf("%w: %s is plain http on another host than the upstream's", ErrUntrustedRealm, u.Redacted())
	}
	host := strings.ToLower(u.Hostname())
	for _, h := range p.hosts {
		if h == host || h == strings.ToLower(HostPort(u)) {
			return nil
		}
	}
	up := strings.ToLower(p.upstream.Hostname())
	if ipLike(host) || ipLike(up) {
		return fmt.Errorf("%w: %s is not the upstream's own host, and an IP address is trusted only for itself", ErrUntrustedRealm, u.Redacted())
	}
	if d := registrableDomain(host); d != "" && d == registrableDomain(up) {
		return nil
	}
	return fmt.Errorf("%w: %s is neither on the upstream's domain nor in QCI_UPSTREAM_TOKEN_HOSTS", ErrUntrustedRealm, u.Redacted())
}

// checkRedirect applies check to every redirect of a token request, before
// it is followed.
func (p realmPolicy) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return fmt.Errorf("%w: more than 5 redirects", ErrUnavailable)
	}
	return p.check(req.URL)
}

// registrableDomain is the host's public suffix plus one label, or "" when
// it has none (localhost, a bare suffix, a name ending in a dot).
func registrableDomain(host string) string {
	if host == "" || strings.HasSuffix(host, ".") {
		return ""
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return ""
	}
	return d
}

// ipLike reports whether host is, or may be read by some resolver as, an IP
// address: anything net.ParseIP takes, an IPv6 form, or a name whose last
// label is a number (decimal, octal or 0x hex: inet_aton reads 127.1 and
// 0x7f.1 as 127.0.0.1; no top-level domain is numeric).
func ipLike(host string) bool {
	if net.ParseIP(host) != nil || strings.Contains(host, ":") {
		return true
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if last == "" {
		return false
	}
	hex := strings.HasPrefix(last, "0x")
	if hex {
		last = last[2:]
	}
	for _, c := range last {
		switch {
		case c >= '0' && c <= '9':
		case hex && (c >= 'a' && c <= 'f'):
		default:
			return false
		}
	}
	return true
}

// sameHostPort compares two URLs' hosts, case-insensitively, with their
// scheme's default port filled in.
func sameHostPort(a, b *url.URL) bool {
	return strings.EqualFold(HostPort(a), HostPort(b))
}

// HostPort is u's host:port, the port defaulted from the scheme (443 for
// https, else 80).
func HostPort(u *url.URL) string {
	if port := u.Port(); port != "" {
		return net.JoinHostPort(u.Hostname(), port)
	}
	port := "80"
	if strings.EqualFold(u.Scheme, "https") {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// basicTransport attaches the robot's Basic credentials to a request only
// when it goes to the realm's own host and port: a redirect elsewhere, even
// a trusted one, carries none (go-containerregistry's basicTransport.target).
type basicTransport struct {
	base               http.RoundTripper
	realm              *url.URL
	username, password string
}

var _ http.RoundTripper = (*basicTransport)(nil)

func (t *basicTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if sameHostPort(req.URL, t.realm) && strings.EqualFold(req.URL.Scheme, t.realm.Scheme) {
		req = req.Clone(req.Context())
		req.SetBasicAuth(t.username, t.password)
	}
	return t.base.RoundTrip(req)
}
