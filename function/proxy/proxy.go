// Package proxy is qci-appci's streaming proxy handler for /v2/…: it checks
// the method, our JWT and the path, in that order and before anything goes
// upstream, then forwards the read to the upstream and streams the answer
// back unbuffered.
package proxy

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/qci-appci/qci-appci/function/manifestcache"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/requestinfo"
	"github.com/qci-appci/qci-appci/function/token"
)

// Options configure the proxy handler.
type Options struct {
	// Repository is the one repository served.
	Repository string
	// Upstream is the upstream registry's base URL.
	Upstream *url.URL
	// Keys verify our access tokens.
	Keys *token.Keys
	// Public resolves the public host: token audience and challenge realm.
	Public publicurl.Resolver
	// Transport reaches the upstream with the robot's token.
	Transport http.RoundTripper
	// Manifests keeps manifests by digest; nil: no cache.
	Manifests *manifestcache.Cache
	// Logger receives upstream failures.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler serves /v2/ and the registry read routes.
type Handler struct {
	opts      Options
	verified  *token.VerifiedCache
	pullScope string
	// bufs are the body copy buffers.
	bufs sync.Pool
}

// New returns the proxy handler.
func New(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{
		opts:      opts,
		verified:  token.NewVerifiedCache(opts.Keys),
		pullScope: registry.PullScope(opts.Repository).String(),
		bufs:      newBufferPool(),
	}
}

var allowRead = []string{"GET, HEAD"}

// ServeHTTP runs the checks of DESIGN.md in order: method, JWT, path, then
// forwards.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowRead
		registry.WriteError(w, http.StatusMethodNotAllowed, registry.CodeUnsupported,
			"method "+r.Method+" is not supported: this registry is read-only")
		return
	}
	scheme, host, ok := h.opts.Public.Resolve(r)
	if !ok {
		registry.WriteError(w, http.StatusBadRequest, registry.CodeUnsupported, "invalid Host header")
		return
	}
	realm := scheme + "://" + host + "/v2/auth"
	route, perr := registry.ParsePath(r.URL.EscapedPath())
	scope := ""
	if route.Repository != "" {
		scope = "repository:" + route.Repository + ":pull"
	}

	raw, ok := bearer(r.Header)
	if !ok {
		registry.WriteChallenge(w, realm, host, scope, "", "authentication required: log in first")
		return
	}
	claims, err := h.verified.VerifyAccess(raw, host, h.opts.Now())
	if err != nil {
		registry.WriteChallenge(w, realm, host, scope, registry.ChallengeInvalidToken, "invalid or expired token: log in again")
		return
	}
	requestinfo.SetUser(r.Context(), claims.Subject)

	switch {
	case errors.Is(perr, registry.ErrNotRoute):
		registry.WriteError(w, http.StatusNotFound, registry.CodeUnsupported, "not a registry route served here")
		return
	case errors.Is(perr, registry.ErrNameInvalid):
		registry.WriteError(w, http.StatusNotFound, registry.CodeNameInvalid, "invalid repository name")
		return
	case route.Kind == registry.KindBase:
		writeBase(w, r)
		return
	case route.Repository != h.opts.Repository:
		registry.WriteError(w, http.StatusNotFound, registry.CodeNameUnknown,
			"repository "+route.Repository+" is not served here; only "+h.opts.Repository+" is")
		return
	case perr != nil:
		code := registry.CodeDigestInvalid
		if route.Kind == registry.KindManifest {
			code = registry.CodeManifestInvalid
		}
		registry.WriteError(w, http.StatusBadRequest, code, "invalid tag or digest "+strconv.Quote(route.Reference))
		return
	case !registry.Allows(claims.Access, h.opts.Repository, "pull"):
		registry.WriteChallenge(w, realm, host, h.pullScope, registry.ChallengeInsufficientScope,
			"the token does not grant pull on "+h.opts.Repository)
		return
	}
	h.forward(r.Context(), w, r, forwarded{scheme: scheme, host: host, route: route})
}

func writeBase(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", "2")
	registry.SetAPIVersion(hdr)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte("{}"))
	}
}

// bearer returns the Bearer token of an Authorization header.
func bearer(h http.Header) (string, bool) {
	v := h.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	tok := strings.TrimSpace(v[7:])
	return tok, tok != ""
}
