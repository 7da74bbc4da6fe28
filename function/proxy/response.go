package proxy

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/requestinfo"
	"github.com/qci-appci/qci-appci/function/upstream"
)

// modifyResponse keeps the upstream's own authentication and cookies to
// itself, points every URL on the upstream's host (Location, Link) back at
// us, and drops a Link to any other host: a client following it would carry
// our token there.
func (h *Handler) modifyResponse(ctx context.Context, fw forwarded, resp *http.Response) {
	requestinfo.SetUpstreamStatus(ctx, resp.StatusCode)
	hdr := resp.Header
	delete(hdr, "Www-Authenticate")
	delete(hdr, "Set-Cookie")
	registry.SetAPIVersion(hdr)
	if loc := hdr.Get("Location"); loc != "" {
		hdr.Set("Location", h.rewriteLocation(loc, fw))
	}
	if links := hdr.Values("Link"); len(links) > 0 {
		delete(hdr, "Link")
		for _, l := range links {
			if kept := h.rewriteLinks(l, fw); kept != "" {
				hdr.Add("Link", kept)
			}
		}
	}
}

// onUpstreamHost reports whether u is absolute and on the upstream's own
// host and port (the scheme's default port filled in).
func (h *Handler) onUpstreamHost(u *url.URL) bool {
	return u.IsAbs() && strings.EqualFold(u.Scheme, h.opts.Upstream.Scheme) &&
		strings.EqualFold(upstream.HostPort(u), upstream.HostPort(h.opts.Upstream))
}

// toPublic moves u from the upstream's host to our public scheme and host,
// keeping path and query.
func toPublic(u *url.URL, fw forwarded) string {
	v := *u
	v.Scheme, v.Host, v.User = fw.scheme, fw.host, nil
	return v.String()
}

// rewriteLocation points a registry redirect on the upstream's host (a
// /v2/ path) at us: a client following it there would carry no upstream
// token; apimachinery's proxy rewriteURL does the same. A redirect to any
// other host (a CDN's pre-signed URL) passes untouched, and so does one on
// the upstream's host outside /v2/: quay with FEATURE_PROXY_STORAGE sends
// blob GETs to its own /_storage_proxy/<signed token>/…, which needs no
// token of ours and which we do not serve. A relative redirect under /v2/
// stays relative (the client resolves it against us); one elsewhere is made
// absolute on the upstream, where it means something.
func (h *Handler) rewriteLocation(loc string, fw forwarded) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if !u.IsAbs() && u.Host == "" {
		if strings.HasPrefix(u.Path, "/v2/") || !strings.HasPrefix(u.Path, "/") {
			return loc
		}
		return h.opts.Upstream.ResolveReference(u).String()
	}
	if !h.onUpstreamHost(u) || fw.host == "" || !strings.HasPrefix(u.Path, "/v2/") {
		return loc
	}
	return toPublic(u, fw)
}

// rewriteLinks rewrites one Link header value (RFC 8288: comma-separated
// "<URI-reference>; param=value" link-values). A relative reference
// (distribution's and today's quay's "</v2/…/tags/list?…>": quay joins
// its app URL's path, not its host, to url_for) is kept, resolved by the
// client against our URL; an absolute one on the upstream's host (older
// quay's "<https://quay.io/v2/…/tags/list?n=100&last=…>") moves to our public
// scheme and host with its path and query; one to any other host, or one
// that does not parse, is dropped (go-containerregistry's getNextPageURL
// refuses another host too). It returns "" when nothing is left.
func (h *Handler) rewriteLinks(v string, fw forwarded) string {
	var kept []string
	for rest := v; ; {
		rest = strings.TrimLeft(rest, " \t,")
		if rest == "" {
			break
		}
		if rest[0] != '<' {
			break // not a link-value: drop it and the rest
		}
		end := strings.IndexByte(rest, '>')
		if end < 0 {
			break
		}
		ref := rest[1:end]
		params, next, ok := linkParams(rest[end+1:])
		rest = next
		u, err := url.Parse(ref)
		switch {
		case !ok || err != nil || ref == "" || strings.ContainsAny(ref, "<> \t"):
			continue
		case u.Host == "" && u.Scheme == "" && u.Opaque == "":
			// relative: stays on whichever host the client asked
		case h.onUpstreamHost(u) && fw.host != "":
			ref = toPublic(u, fw)
		default:
			continue
		}
		kept = append(kept, "<"+ref+">"+params)
	}
	return strings.Join(kept, ", ")
}

// linkParams reads the parameters that follow a link-value's "<…>" (RFC
// 8288: *( OWS ";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] ))
// up to the comma that ends the link-value. It returns them, the rest after
// that comma, and false when they do not have that shape: then the caller
// drops the link-value, and the rest is skipped to the next comma outside
// quotes.
func linkParams(s string) (params, rest string, ok bool) {
	i := 0
	ows := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	token := func() bool {
		j := i
		for i < len(s) && upstream.IsTokenChar(s[i]) {
			i++
		}
		return i > j
	}
	skip := func() (string, string, bool) {
		quoted := false
		for ; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && quoted:
				i++
			case c == '"':
				quoted = !quoted
			case c == ',' && !quoted:
				return "", s[i+1:], false
			}
		}
		return "", "", false
	}
	for {
		ows()
		if i == len(s) {
			return s, "", true
		}
		if s[i] == ',' {
			return s[:i], s[i+1:], true
		}
		if s[i] != ';' {
			return skip()
		}
		i++
		ows()
		if !token() {
			return skip()
		}
		ows()
		if i == len(s) || s[i] != '=' {
			continue
		}
		i++
		ows()
		if i < len(s) && s[i] == '"' {
			i++
			for i < len(s) && s[i] != '"' {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return "", "", false
			}
			i++ // the closing quote
		} else if !token() {
			return skip()
		}
	}
}
