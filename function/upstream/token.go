package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// fetchTimeout bounds one discovery plus token fetch, whoever waits for it.
const fetchTimeout = 30 * time.Second

// prefetchBackoff is how long after a failed fetch Prefetch starts none:
// a flood of /v2/ probes must not become a flood of robot logins upstream.
const prefetchBackoff = 10 * time.Second

// defaultTokenLifetime is assumed when the token endpoint says nothing.
const defaultTokenLifetime = 60 * time.Second

// maxTokenResponse bounds the token endpoint's answer.
const maxTokenResponse = 1 << 20

// TokenSourceOptions configure a TokenSource.
type TokenSourceOptions struct {
	// URL is the upstream registry, e.g. https://quay.io.
	URL *url.URL
	// Repository is the repository the token must grant pull on.
	Repository string
	// Username and Password are the robot's.
	Username, Password string
	// Transport carries discovery and token requests.
	Transport http.RoundTripper
	// TokenHosts are token endpoints the operator trusts besides the
	// upstream's own trust domain ("host" or "host:port", https only).
	TokenHosts []string
	// Logger receives fetch failures, never credentials.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// TokenSource hands out the robot's upstream token, in the manner of
// golang.org/x/oauth2's TokenSource. Nothing happens until the first call:
// then the realm is found through the upstream's own /v2/ challenge and a
// token fetched with the robot's Basic credentials. The token is cached until
// shortly before it expires; concurrent callers share one fetch, each
// waiting with its own context.
type TokenSource struct {
	opts   TokenSourceOptions
	client *http.Client // discovery: no credentials, no redirects
	policy realmPolicy
	flight singleflight.Group

	mu         sync.Mutex
	discovered bool
	realm      *url.URL // nil once discovered: the upstream needs no token
	service    string
	token      string
	refreshAt  time.Time
	failedAt   time.Time // of the last failed fetch
}

// NewTokenSource returns a TokenSource; it does not contact anything.
func NewTokenSource(opts TokenSourceOptions) *TokenSource {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &TokenSource{
		opts:   opts,
		policy: newRealmPolicy(opts.URL, opts.TokenHosts),
		client: &http.Client{Transport: opts.Transport, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
	}
}

// Token returns the upstream token, or "" when the upstream needs none.
// Errors wrap ErrUnavailable or ErrRobotRefused.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	if tok, ok := s.cached(); ok {
		return tok, nil
	}
	ch := s.flight.DoChan("token", func() (any, error) {
		return s.fetchDetached(context.WithoutCancel(ctx))
	})
	select {
	case <-ctx.Done():
		return "", fmt.Errorf("%w: waiting for the upstream token: %w", ErrUnavailable, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	}
}

// Prefetch starts fetching the token in the background, unless it is cached,
// a fetch is in flight (it joins nothing and waits for nothing), or the last
// fetch failed less than prefetchBackoff ago. A request that reaches /v2/ or
// /v2/auth calls it: a pull is coming, and its first proxied request then
// finds the token ready. The fetch runs detached from any request, bounded
// by the same timeout as every fetch, and shares the flight of Token.
func (s *TokenSource) Prefetch() {
	if !s.prefetchDue() {
		return
	}
	s.flight.DoChan("token", func() (any, error) {
		return s.fetchDetached(context.Background())
	})
}

// prefetchDue reports whether Prefetch should start a fetch: no token is
// cached and the last fetch did not fail within prefetchBackoff.
func (s *TokenSource) prefetchDue() bool {
	if _, ok := s.cached(); ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failedAt.IsZero() || s.opts.Now().Sub(s.failedAt) >= prefetchBackoff
}

// fetchDetached runs one fetch under fetchTimeout and records a failure's
// time for Prefetch.
func (s *TokenSource) fetchDetached(ctx context.Context) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	tok, err := s.fetch(ctx)
	if err != nil {
		s.mu.Lock()
		s.failedAt = s.opts.Now()
		s.mu.Unlock()
	}
	return tok, err
}

// Invalidate drops tok if it is still the cached token, after the upstream
// refused it. When the upstream needed no token, the next Token call looks
// for a realm again.
func (s *TokenSource) Invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.discovered {
		return
	}
	if s.realm == nil {
		s.discovered = false
		return
	}
	if s.token == tok {
		s.token = ""
	}
}

func (s *TokenSource) cached() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.discovered {
		return "", false
	}
	if s.realm == nil {
		return "", true
	}
	if s.token != "" && s.opts.Now().Before(s.refreshAt) {
		return s.token, true
	}
	return "", false
}

func (s *TokenSource) fetch(ctx context.Context) (string, error) {
	if tok, ok := s.cached(); ok { // another flight finished meanwhile
		return tok, nil
	}
	s.mu.Lock()
	discovered, realm, service := s.discovered, s.realm, s.service
	s.mu.Unlock()
	if !discovered {
		var err error
		realm, service, err = s.discover(ctx)
		if err != nil {
			s.opts.Logger.ErrorContext(ctx, "upstream token: discovery failed", "error", err)
			return "", err
		}
		s.mu.Lock()
		s.discovered, s.realm, s.service = true, realm, service
		s.mu.Unlock()
		if realm == nil {
			s.opts.Logger.InfoContext(ctx, "upstream needs no token", "upstream", s.opts.URL.String())
			return "", nil
		}
	}
	start := s.opts.Now()
	tok, lifetime, err := s.request(ctx, realm, service)
	if err != nil {
		s.opts.Logger.ErrorContext(ctx, "upstream token: fetch failed", "realm", realm.String(), "error", err)
		return "", err
	}
	margin := min(30*time.Second, lifetime/4)
	s.mu.Lock()
	s.token, s.refreshAt = tok, start.Add(lifetime-margin)
	s.mu.Unlock()
	s.opts.Logger.InfoContext(ctx, "upstream token fetched", "realm", realm.String(), "lifetime", lifetime.String())
	return tok, nil
}

// discover asks the upstream's /v2/ for its challenge. A 200 means no token
// is needed (realm nil).
func (s *TokenSource) discover(ctx context.Context) (*url.URL, string, error) {
	u := s.opts.URL.JoinPath("/v2/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("%w: GET %s: %w", ErrUnavailable, u.Redacted(), err)
	}
	defer drainClose(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return nil, "", nil
	case http.StatusUnauthorized:
	default:
		return nil, "", fmt.Errorf("%w: GET %s answered %s", ErrUnavailable, u.Redacted(), resp.Status)
	}
	for _, h := range resp.Header.Values("WWW-Authenticate") {
		c := parseChallenge(h)
		if c.scheme != "bearer" || c.params["realm"] == "" {
			continue
		}
		realm, err := url.Parse(c.params["realm"])
		if err != nil || !realm.IsAbs() {
			return nil, "", fmt.Errorf("%w: upstream challenge names an invalid realm %q", ErrUnavailable, c.params["realm"])
		}
		// Checked before it is kept: the robot credentials go only into
		// the upstream's trust domain, never wherever a challenge points.
		if err := s.policy.check(realm); err != nil {
			return nil, "", fmt.Errorf("%w: upstream challenge: %w; not sending the robot credentials there", ErrUnavailable, err)
		}
		return realm, c.params["service"], nil
	}
	return nil, "", fmt.Errorf("%w: upstream /v2/ answered 401 without a Bearer realm", ErrUnavailable)
}

type tokenResponse struct {
	Token       string    `json:"token"`
	AccessToken string    `json:"access_token"`
	ExpiresIn   int64     `json:"expires_in"`
	IssuedAt    time.Time `json:"issued_at"`
}

func (s *TokenSource) request(ctx context.Context, realm *url.URL, service string) (string, time.Duration, error) {
	u := *realm
	q := u.Query()
	if service != "" {
		q.Set("service", service)
	}
	q.Set("scope", "repository:"+s.opts.Repository+":pull")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Every redirect is checked like the realm; the Basic credentials go
	// only to the realm's own host.
	client := &http.Client{
		Transport:     &basicTransport{base: s.opts.Transport, realm: realm, username: s.opts.Username, password: s.opts.Password},
		CheckRedirect: s.policy.checkRedirect,
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("%w: token endpoint %s: %w", ErrUnavailable, realm.Redacted(), err)
	}
	defer drainClose(resp.Body)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", 0, fmt.Errorf("%w: token endpoint %s answered %s", ErrRobotRefused, realm.Redacted(), resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", 0, fmt.Errorf("%w: token endpoint %s answered %s", ErrUnavailable, realm.Redacted(), resp.Status)
	}
	var tr tokenResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTokenResponse)).Decode(&tr); err != nil {
		return "", 0, fmt.Errorf("%w: token endpoint %s: decode answer: %w", ErrUnavailable, realm.Redacted(), err)
	}
	tok := tr.Token
	if tok == "" {
		tok = tr.AccessToken
	}
	if tok == "" {
		return "", 0, fmt.Errorf("%w: token endpoint %s answered no token", ErrUnavailable, realm.Redacted())
	}
	return tok, s.lifetime(tr, tok), nil
}

// lifetime is expires_in, else the token's own exp, else a minute.
func (s *TokenSource) lifetime(tr tokenResponse, tok string) time.Duration {
	if tr.ExpiresIn > 0 {
		return time.Duration(tr.ExpiresIn) * time.Second
	}
	if exp, ok := jwtExpiry(tok); ok {
		if d := exp.Sub(s.opts.Now()); d > 0 {
			return d
		}
	}
	return defaultTokenLifetime
}

// jwtExpiry reads exp from a JWT's payload without verifying it: the token
// is the upstream's, only its lifetime matters here.
func jwtExpiry(tok string) (time.Time, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return time.Time{}, false
	}
	f, err := claims.Exp.Float64()
	if err != nil || f <= 0 {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 64<<10)
	_ = body.Close()
}
