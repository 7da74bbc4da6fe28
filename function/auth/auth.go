// Package auth is qci-appci's token endpoint, /v2/auth: it parses a
// docker-style GET (Basic auth) or an OAuth2 POST (password or refresh_token
// grant), logs the user in as the robot or with a cluster token, and issues
// our access token for the granted scopes.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/loginlimit"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/publicurl"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/requestinfo"
	"github.com/qci-appci/qci-appci/function/token"
)

// MaxFormBytes bounds a POSTed form.
const MaxFormBytes = 64 << 10

// Options configure the token endpoint.
type Options struct {
	// Policy decides which requested pull scopes a login is granted.
	Policy *policy.Policy
	// Robot checks the robot credentials.
	Robot *login.Robot
	// Cluster logs cluster users in; nil when cluster login is off.
	Cluster ClusterLogin
	// Issuer signs the tokens.
	Issuer *token.Issuer
	// Public resolves the public host: token issuer and audience.
	Public publicurl.Resolver
	// Limiter limits failed logins per client address and username; nil:
	// no limit.
	Limiter *loginlimit.Limiter
	// ClientIPHeader names the platform's header that holds the client's
	// address (X-Forwarded-For, read by loginlimit.ClientAddress); empty:
	// the peer's address.
	ClientIPHeader string
	// Logger receives one line per login, never a secret.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics count logins (qci_logins_total); nil: not counted.
	Metrics *metrics.Metrics
}

// ClusterLogin is what the endpoint needs of a cluster: a cached answer for
// a token, if any; log in with a token; and re-authorize a known user on
// refresh. With one cluster, Login and Authorize only authenticate, and
// Policy decides each scope with its own reviews; a cluster of
// QCI_CLUSTERS_FILE authorizes at Login and Authorize as configured there.
type ClusterLogin interface {
	Cached(token string) (login.Answer, bool)
	Login(ctx context.Context, token string) (login.Identity, error)
	Authorize(ctx context.Context, id login.Identity) error
}

// Handler serves /v2/auth.
type Handler struct{ opts Options }

// New returns the token endpoint.
func New(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{opts: opts}
}

// request is a parsed token request.
type request struct {
	grant        string // "password" or "refresh_token"
	username     string
	password     string
	refreshToken string
	scopes       []string
	wantRefresh  bool
}

// response is the token answer; token and access_token are the same JWT.
type response struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int64  `json:"expires_in"`
	IssuedAt     string `json:"issued_at"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

var (
	allowAuth      = []string{"GET, POST"}
	basicChallenge = []string{`Basic realm="qci-appci"`}
)

// errBadRequest marks a request that cannot be parsed.
var errBadRequest = errors.New("bad token request")

// ServeHTTP answers a token request: 200 with the token answer, or the
// registry error that says why not (400, 401, 403, 405, 429, 503).
// A 429 is a client past its failed-login limit, or a user past their
// limit of fresh image-stream reviews (policy.LimitedError).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req request
	var err error
	switch r.Method {
	case http.MethodGet:
		req, err = parseGet(r)
	case http.MethodPost:
		req, err = parsePost(w, r)
	default:
		w.Header()["Allow"] = allowAuth
		registry.WriteError(w, http.StatusMethodNotAllowed, registry.CodeUnsupported,
			"method "+r.Method+" is not supported on /v2/auth: use GET with Basic auth or POST an OAuth2 form")
		return
	}
	if err != nil {
		if errors.Is(err, errBadRequest) {
			registry.WriteError(w, http.StatusBadRequest, registry.CodeUnsupported, err.Error())
			return
		}
		h.unauthorized(w, "credentials required: log in with a username and password (robot, or any user name with a cluster token)")
		return
	}
	_, host, ok := h.opts.Public.Resolve(r)
	if !ok {
		registry.WriteError(w, http.StatusBadRequest, registry.CodeUnsupported, "invalid Host header")
		return
	}
	client := loginlimit.ClientAddress(r, h.opts.ClientIPHeader)
	sub, how, err := h.authenticate(r.Context(), req, host, client)
	log := h.opts.Logger.With("user", sub.Name, "username", req.username, "login", how, "grant_type", req.grant,
		"remote", remoteAddr(r), "forwarded_for", r.Header.Get("X-Forwarded-For"), "client", client)
	if sub.Cluster != "" {
		log = log.With("cluster", sub.Cluster)
	}
	var grant []registry.Scope
	if err == nil {
		grant, err = h.grant(r.Context(), log, req, sub)
	}
	h.opts.Metrics.Login(how, loginResult(r.Context(), err))
	if err != nil {
		h.countFailure(r.Context(), err, client, limitedName(how, req.username))
		h.loginFailed(w, r, log, err)
		return
	}
	// Only now is the user known: a refused login names nobody in the
	// access line.
	requestinfo.SetUser(r.Context(), sub.Name)
	if sub.Cluster != "" {
		requestinfo.SetCluster(r.Context(), sub.Cluster)
	}
	h.issue(w, r, log, req, host, sub, grant)
}

// limitedError refuses a login whose client address or username is past
// its failed-login limit.
type limitedError struct{ retryAfter time.Duration }

func (e *limitedError) Error() string {
	return fmt.Sprintf("too many failed logins from this client or for this username; retry after %v", e.retryAfter)
}

// countFailure takes a token of the failed-login limit for a wrong
// credential or a denial that review did not count already (the robot's,
// a cached denial, a bad refresh token), and logs once when that limits
// the client or the username.
func (h *Handler) countFailure(ctx context.Context, err error, client, username string) {
	var c counted
	if h.opts.Limiter == nil || !failure(err) || errors.As(err, &c) {
		return
	}
	h.logLimited(ctx, h.opts.Limiter.Failed(h.opts.Now(), client, username))
}

// limitedName is the username whose failed-login bucket a failure takes a
// token of: the robot's reserved name, whose password is the one that can
// be guessed; none for a cluster login, where the token names the user and
// the username means nothing (every kubelet of qci-credential-provider
// sends the same one), so that nobody can spend a shared name's bucket and
// lock out everyone who sends it. Cluster logins are limited per address.
func limitedName(how, username string) string {
	if how == "robot" {
		return username
	}
	return ""
}

func (h *Handler) logLimited(ctx context.Context, keys []loginlimit.Key) {
	for _, k := range keys {
		h.opts.Logger.WarnContext(ctx, "failed-login limit reached: logins that need a cluster review are refused with 429 until it refills",
			"limited_"+string(k.Kind), k.Value)
	}
}

func parseGet(r *http.Request) (request, error) {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return request{}, login.ErrBadCredentials
	}
	q := r.URL.Query()
	return request{
		grant:       "password",
		username:    user,
		password:    pass,
		scopes:      q["scope"],
		wantRefresh: q.Get("offline_token") == "true",
	}, nil
}

func parsePost(w http.ResponseWriter, r *http.Request) (request, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "application/x-www-form-urlencoded" {
		return request{}, badRequestf("POST /v2/auth needs an application/x-www-form-urlencoded body")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxFormBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return request{}, badRequestf("form body larger than 64 KiB")
		}
		return request{}, badRequestf("reading the form body failed")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return request{}, badRequestf("malformed form body")
	}
	req := request{grant: form.Get("grant_type"), scopes: form["scope"]}
	switch req.grant {
	case "password":
		req.username, req.password = form.Get("username"), form.Get("password")
		req.wantRefresh = true
		if req.password == "" {
			return request{}, login.ErrBadCredentials
		}
	case "refresh_token":
		req.refreshToken = form.Get("refresh_token")
		if req.refreshToken == "" {
			return request{}, login.ErrBadCredentials
		}
	case "":
		return request{}, badRequestf("grant_type is required (password or refresh_token)")
	default:
		return request{}, badRequestf("unsupported grant_type " + safeQuote(req.grant) + ": use password or refresh_token")
	}
	return req, nil
}

// badRequestf makes a 400 error with msg, matched by errBadRequest.
func badRequestf(msg string) error { return &badRequest{msg} }

type badRequest struct{ msg string }

func (e *badRequest) Error() string        { return e.msg }
func (e *badRequest) Is(target error) bool { return target == errBadRequest }

// authenticate logs the request in and says who and how.
func (h *Handler) authenticate(ctx context.Context, req request, host, client string) (token.Subject, string, error) {
	if req.grant == "refresh_token" {
		return h.refresh(ctx, req.refreshToken, host)
	}
	if h.opts.Robot.Reserved(req.username) {
		// The robot's name, in any case and with '+' or a space, is
		// reserved: a wrong password is never a cluster token. Its check
		// costs no review, and a successful login is never slowed, so it
		// is not refused past the limit; its failures are counted (and
		// reported) like any other.
		if err := h.opts.Robot.Check(req.username, req.password); err != nil {
			return token.Subject{Name: req.username}, "robot", err
		}
		return token.Subject{Name: req.username, Login: token.LoginRobot}, "robot", nil
	}
	if h.opts.Robot.IsPassword(req.password) {
		// The robot's password leaves the process only for the upstream's
		// token endpoint, never as a cluster token.
		return token.Subject{Name: req.username}, "cluster", fmt.Errorf("%w: the robot's password under another username", login.ErrBadCredentials)
	}
	if h.opts.Cluster == nil {
		return token.Subject{Name: req.username}, "cluster", errClusterOff
	}
	ans, cached := h.opts.Cluster.Cached(req.password)
	if !cached {
		ans.Identity, ans.Err = h.review(ctx, req, client)
	}
	id := ans.Identity
	sub := token.Subject{Name: id.Name, Login: token.LoginCluster, UID: id.UID, Groups: id.Groups, Extra: id.Extra, Cluster: id.Cluster}
	return sub, "cluster", ans.Err
}

// review logs a cluster user in through the cluster, within the
// failed-login limit: past it, a limitedError before any review.
func (h *Handler) review(ctx context.Context, req request, client string) (login.Identity, error) {
	if h.opts.Limiter == nil {
		return h.opts.Cluster.Login(ctx, req.password)
	}
	pending, retry, ok := h.opts.Limiter.Begin(h.opts.Now(), client, limitedName("cluster", req.username))
	if !ok {
		return login.Identity{}, &limitedError{retryAfter: retry}
	}
	id, err := h.opts.Cluster.Login(ctx, req.password)
	h.logLimited(ctx, h.opts.Limiter.End(h.opts.Now(), pending, failure(err)))
	if err != nil {
		return id, counted{err}
	}
	return id, nil
}

// counted marks a failure already taken from the failed-login limit.
type counted struct{ error }

func (c counted) Unwrap() error { return c.error }

// failure reports whether err is the client's failure: wrong credentials
// or a denial, not an outage or a hung-up client.
func failure(err error) bool {
	return errors.Is(err, login.ErrBadCredentials) || errors.Is(err, login.ErrDenied)
}

var errClusterOff = errors.New("cluster login is off (no QCI_KUBECONFIG, not in a cluster)")

func (h *Handler) refresh(ctx context.Context, raw, host string) (token.Subject, string, error) {
	claims, err := h.opts.Issuer.Keys.Verify(raw, host, token.KindRefresh, h.opts.Now())
	if err != nil {
		return token.Subject{}, "refresh", errors.Join(login.ErrBadCredentials, err)
	}
	sub := token.SubjectOf(claims)
	switch sub.Login {
	case token.LoginRobot:
		if !h.opts.Robot.Is(sub.Name) { // the robot was renamed since
			return sub, "refresh", login.ErrBadCredentials
		}
		return sub, "refresh", nil
	case token.LoginCluster:
		if h.opts.Cluster == nil {
			return sub, "refresh", errClusterOff
		}
		// A cluster of QCI_CLUSTERS_FILE with a login-time rule re-authorizes
		// the user as at login; where scopes are reviewed per image stream
		// (one cluster, or a clusters-file cluster with imageStreams), this
		// checks nothing and grant reviews the scopes afresh.
		err := h.opts.Cluster.Authorize(ctx, login.Identity{Name: sub.Name, UID: sub.UID, Groups: sub.Groups, Extra: sub.Extra, Cluster: sub.Cluster})
		return sub, "refresh", err
	default:
		return sub, "refresh", login.ErrBadCredentials
	}
}

func (h *Handler) loginFailed(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	ctx := r.Context()
	var limited *limitedError
	var reviewLimited *policy.LimitedError
	var denied *login.DeniedError
	var scopesDenied *deniedError
	switch {
	case errors.As(err, &limited):
		// Logged once when the limit was reached, not per refused attempt.
		tooManyRequests(w, limited.retryAfter, "too many failed logins from this address or for this username")
	case errors.As(err, &reviewLimited):
		// Logged once by grant when the user became limited.
		tooManyRequests(w, reviewLimited.RetryAfter, "too many image streams not asked recently were requested for this user")
	case ctx.Err() != nil:
		// The client hung up while its login waited: not an outage.
		log.InfoContext(ctx, "login abandoned: the client went away", "error", err)
		registry.WriteError(w, http.StatusServiceUnavailable, registry.CodeUnavailable, "login abandoned")
	case errors.As(err, &scopesDenied):
		log.WarnContext(ctx, "login denied", "error", err)
		registry.WriteError(w, http.StatusForbidden, registry.CodeDenied, scopesDenied.msg)
	case errors.As(err, &denied):
		log.WarnContext(ctx, "login denied", "error", err)
		registry.WriteError(w, http.StatusForbidden, registry.CodeDenied,
			"authenticated as "+safeQuote(denied.User)+", but not allowed to pull: the user needs "+login.PullPermission(denied.Namespace))
	case errors.Is(err, login.ErrDenied):
		log.WarnContext(ctx, "login denied", "error", err)
		registry.WriteError(w, http.StatusForbidden, registry.CodeDenied, "authenticated, but not allowed to pull")
	case errors.Is(err, login.ErrBusy):
		log.WarnContext(ctx, "login refused: too many cluster reviews in flight", "error", err)
		registry.WriteError(w, http.StatusServiceUnavailable, registry.CodeUnavailable,
			"too many logins are being checked right now; try again shortly")
	case errors.Is(err, login.ErrUnavailable):
		log.ErrorContext(ctx, "login failed: cluster unavailable", "error", err)
		registry.WriteError(w, http.StatusServiceUnavailable, registry.CodeUnavailable,
			"the cluster that checks tokens is unavailable; try again later")
	default:
		log.WarnContext(ctx, "login failed: wrong credentials", "error", err)
		h.unauthorized(w, "wrong username, password or token")
	}
}

// tooManyRequests answers 429 TOOMANYREQUESTS with a Retry-After of
// retryAfter in whole seconds (at least 1), msg saying what was too many.
func tooManyRequests(w http.ResponseWriter, retryAfter time.Duration, msg string) {
	seconds := strconv.Itoa(max(1, int(math.Ceil(retryAfter.Seconds()))))
	registry.WriteError(retryAfterWriter{w, seconds}, http.StatusTooManyRequests, registry.CodeTooManyRequests,
		msg+"; retry after "+seconds+"s")
}

// retryAfterWriter sets Retry-After as the response header is written,
// over the default that registry.WriteError sets.
type retryAfterWriter struct {
	http.ResponseWriter
	seconds string
}

func (w retryAfterWriter) WriteHeader(code int) {
	w.Header().Set("Retry-After", w.seconds)
	w.ResponseWriter.WriteHeader(code)
}

func (h *Handler) unauthorized(w http.ResponseWriter, msg string) {
	w.Header()["Www-Authenticate"] = basicChallenge
	registry.WriteError(w, http.StatusUnauthorized, registry.CodeUnauthorized, msg)
}

func (h *Handler) issue(w http.ResponseWriter, r *http.Request, log *slog.Logger, req request, host string, sub token.Subject, grant []registry.Scope) {
	now := h.opts.Now()
	access, err := h.opts.Issuer.Access(host, sub, grant, now)
	if err != nil {
		log.ErrorContext(r.Context(), "signing failed", "error", err)
		registry.WriteError(w, http.StatusInternalServerError, registry.CodeUnavailable, "could not sign a token")
		return
	}
	resp := response{
		Token:       access.Raw,
		AccessToken: access.Raw,
		ExpiresIn:   int64(h.opts.Issuer.AccessTTL / time.Second),
		IssuedAt:    access.Claims.IssuedAt.UTC().Format(time.RFC3339),
	}
	if req.wantRefresh && req.grant == "password" {
		refresh, err := h.opts.Issuer.Refresh(host, sub, now)
		if err != nil {
			log.ErrorContext(r.Context(), "signing failed", "error", err)
			registry.WriteError(w, http.StatusInternalServerError, registry.CodeUnavailable, "could not sign a token")
			return
		}
		resp.RefreshToken = refresh.Raw
	}
	scopes := make([]string, len(grant))
	for i, s := range grant {
		scopes[i] = s.String()
	}
	log.InfoContext(r.Context(), "login", "granted", scopes, "refresh_token", resp.RefreshToken != "")
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	registry.SetAPIVersion(hdr)
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

// remoteAddr is the peer's IP; behind Knative or Cloud Run that is the
// platform's proxy, so the log also keeps X-Forwarded-For as given.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// safeQuote quotes at most 64 bytes of s for an error message.
func safeQuote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return `"` + strings.Map(func(r rune) rune {
		if r < 0x20 || r == '"' || r == 0x7f {
			return '?'
		}
		return r
	}, s) + `"`
}
