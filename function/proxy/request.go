package proxy

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/qci-appci/qci-appci/function/registry"
)

// forwardHeaders are the only client headers that reach the upstream, under
// the robot's identity: what registry clients send on reads. Decided from
// their sources: containers/image (skopeo, podman: Accept per manifest
// type, Range for resumed and partial blob reads, User-Agent,
// Docker-Distribution-API-Version), go-containerregistry (Accept, Range,
// User-Agent), containerd (Accept, Range, User-Agent, Accept-Encoding); Go
// clients add Accept-Encoding: gzip on the wire. The conditional headers
// (If-None-Match, If-Modified-Since, If-Range, If-Match,
// If-Unmodified-Since) only narrow a read. Everything else is dropped:
// Authorization and Cookie (ours, not the upstream's), method overrides
// (X-HTTP-Method-Override), routing headers (X-Original-URL,
// X-Rewrite-URL, Forwarded, X-Forwarded-*), and any other.
var forwardHeaders = []string{
	"Accept",
	"Accept-Encoding",
	"Docker-Distribution-Api-Version",
	"If-Match",
	"If-Modified-Since",
	"If-None-Match",
	"If-Range",
	"If-Unmodified-Since",
	"Range",
	"User-Agent",
}

// maxHeaderValues bounds the values of one forwarded header: containers/image
// sends one Accept line per manifest type (about 6).
const maxHeaderValues = 32

// forwardQuery are the query parameters the distribution spec defines on
// each read route; no other parameter goes upstream (a JWT of ours in
// ?access_token= among them). Manifests and blobs take none.
var forwardQuery = map[registry.Kind][]string{
	registry.KindTags:      {"n", "last"},
	registry.KindReferrers: {"artifactType"},
}

// outHeader builds the outgoing request's header from the allowlist alone;
// the token is added later by the upstream transport.
func outHeader(in http.Header) http.Header {
	out := make(http.Header, len(forwardHeaders))
	for _, k := range forwardHeaders {
		if v := in[k]; len(v) > 0 {
			out[k] = v[:min(len(v), maxHeaderValues):min(len(v), maxHeaderValues)]
		}
	}
	return out
}

// outQuery keeps the route's parameters of the client's query, in the
// canonical encoding.
func outQuery(kind registry.Kind, in *url.URL) string {
	names := forwardQuery[kind]
	if len(names) == 0 || in.RawQuery == "" {
		return ""
	}
	q := in.Query()
	out := make(url.Values, len(names))
	for _, k := range names {
		if v, ok := q[k]; ok {
			out[k] = v[:min(len(v), maxHeaderValues)]
		}
	}
	return out.Encode()
}

// outRequest builds the request to the upstream: the checked path, the
// route's query parameters, the upstream's Host, and the allowlisted
// headers only; nothing of the client's credentials (the upstream
// transport adds the robot's token).
func (h *Handler) outRequest(ctx context.Context, r *http.Request, fw forwarded) (*http.Request, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, "", nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: build upstream request: %w", err)
	}
	out.URL = &url.URL{
		Scheme:   h.opts.Upstream.Scheme,
		Host:     h.opts.Upstream.Host,
		Path:     r.URL.Path,
		RawPath:  r.URL.RawPath,
		RawQuery: outQuery(fw.route.Kind, r.URL),
	}
	out.Host = ""
	out.Header = outHeader(r.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // not Go's default
	}
	return out, nil
}
