package upstream

import (
	"fmt"
	"net/http"
)

// authTransport adds the robot's upstream token to each request and retries
// a GET or HEAD once with a fresh token when the upstream answers 401.
type authTransport struct {
	base   http.RoundTripper
	source *TokenSource
}

var _ http.RoundTripper = (*authTransport)(nil)

// NewAuthTransport wraps base. The request's Authorization header is
// replaced in place: it is meant for the fresh outgoing requests that the
// proxy clones for the upstream, which nothing else holds.
func NewAuthTransport(base http.RoundTripper, source *TokenSource) http.RoundTripper {
	return &authTransport{base: base, source: source}
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.source.Token(req.Context())
	if err != nil {
		return nil, err
	}
	setBearer(req.Header, tok)
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	if req.Body != nil && req.Body != http.NoBody {
		return resp, nil // cannot replay a body; only GET and HEAD reach here
	}
	drainClose(resp.Body)
	t.source.Invalidate(tok)
	if tok, err = t.source.Token(req.Context()); err != nil {
		return nil, err
	}
	setBearer(req.Header, tok)
	resp, err = t.base.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	drainClose(resp.Body)
	t.source.Invalidate(tok)
	return nil, fmt.Errorf("%w: upstream answered 401 to a fresh token for %s %s", ErrRobotRefused, req.Method, req.URL.Path)
}

func setBearer(h http.Header, tok string) {
	if tok == "" {
		delete(h, "Authorization")
		return
	}
	h["Authorization"] = []string{"Bearer " + tok}
}
