// Package clusterroute logs cluster users in when the function knows
// several clusters (QCI_CLUSTERS_FILE): it sends each token to the one
// cluster that issued it, chosen without trying the clusters in turn. A
// JWT goes to the cluster whose issuer is its unverified iss claim (that
// cluster's TokenReview then verifies it), an opaque token to the cluster
// that accepts opaque tokens, and a token that matches no cluster is
// refused with no review anywhere. Each cluster has its own login.Cluster,
// so its own review cache, and one cluster down fails only its own users.
// The router is also the policy's reviewer of image streams: each review
// goes to the cluster that authenticated the user.
package clusterroute

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/qci-appci/qci-appci/function/clusterconfig"
	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/policy"
	"github.com/qci-appci/qci-appci/function/requestinfo"
)

// Login is what the router needs of one cluster; *login.Cluster is one.
type Login interface {
	Cached(token string) (login.Answer, bool)
	Login(ctx context.Context, token string) (login.Identity, error)
	Authorize(ctx context.Context, id login.Identity) error
}

var _ Login = (*login.Cluster)(nil)

// Options configure the router.
type Options struct {
	// CacheTTL is the longest an allowed review is reused, per cluster.
	CacheTTL time.Duration
	// Logger receives why a token was routed nowhere; each cluster's
	// login logs with a "cluster" attribute.
	Logger *slog.Logger
	// Metrics count every cluster's reviews and cache hits together; nil:
	// not counted.
	Metrics *metrics.Metrics
}

// Router is a login over several clusters. It implements the auth
// handler's ClusterLogin, and policy.Reviewer for the clusters that review
// each image stream.
type Router struct {
	routes []*route
	byName map[string]*route
	opaque *route // nil when no cluster accepts opaque tokens
	log    *slog.Logger
}

var (
	_ Login           = (*Router)(nil)
	_ policy.Reviewer = (*Router)(nil)
)

// route is one cluster and what is known of its issuers.
type route struct {
	name    string
	login   Login
	issuers []string // from the file; empty: discover
	// discover finds the issuer; nil when the file lists the issuers.
	discover func(ctx context.Context) (string, error)
	// review runs a review per image stream at this cluster; nil when the
	// cluster authorizes at login (a namespace review or an allow list).
	review policy.ReviewFunc
	// flatNamespace is, with review, the namespace of the review for the
	// upstream repository.
	flatNamespace string

	mu         sync.Mutex
	discovered string // the issuer found; "" until found
	flight     singleflight.Group
}

// New builds one login.Cluster for each cluster of f; it contacts nothing.
func New(f *clusterconfig.File, opts Options) *Router {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rt := &Router{byName: make(map[string]*route, len(f.Clusters)), log: opts.Logger}
	for _, c := range f.Clusters {
		log := opts.Logger.With("cluster", c.Name)
		lo := login.ClusterOptions{
			Name:       c.Name,
			Kubeconfig: c.Kubeconfig,
			Namespace:  c.Authorization.Namespace,
			Audiences:  c.Audiences,
			CacheTTL:   opts.CacheTTL,
			Logger:     log,
			Metrics:    opts.Metrics,
		}
		if c.Authorization.ImageStreams {
			// The login only authenticates; each image stream is reviewed
			// when asked for (Review), the namespace only for the upstream
			// repository.
			lo.Namespace = ""
		}
		if allow := c.Authorization.Allow; allow != nil {
			lo.Authorize = func(ctx context.Context, id login.Identity) error {
				if allow.Allowed(id.Name) {
					return nil
				}
				return fmt.Errorf("%w: %q is not on the allow list of cluster %s", login.ErrDenied, id.Name, c.Name)
			}
		}
		cl := login.NewCluster(lo)
		r := &route{name: c.Name, login: cl, issuers: c.Issuers}
		if c.Authorization.ImageStreams {
			r.review, r.flatNamespace = cl.ReviewImageStream, c.Authorization.Namespace
		}
		if len(c.Issuers) == 0 {
			r.discover = func(ctx context.Context) (string, error) { return discoverIssuer(ctx, c) }
		}
		rt.routes = append(rt.routes, r)
		rt.byName[r.name] = r
		if c.OpaqueTokens {
			rt.opaque = r
		}
	}
	return rt
}

// Cached returns the cached answer of the cluster token belongs to, when
// that cluster is known without asking anyone (a listed or already
// discovered issuer, or the opaque-token cluster) and has one. It never
// contacts a cluster.
func (rt *Router) Cached(token string) (login.Answer, bool) {
	iss, jwt, err := untrustedIssuer(token)
	var r *route
	switch {
	case !jwt:
		r = rt.opaque
	case err == nil:
		if m := rt.match(iss); len(m) == 1 {
			r = m[0]
		}
	}
	if r == nil {
		return login.Answer{}, false
	}
	a, ok := r.login.Cached(token)
	if ok {
		a.Identity.Cluster = r.name
	}
	return a, ok
}

// Login reviews token at the one cluster that issued it, and names that
// cluster in the identity (so in the refresh token) and in the request's
// access line. A token of no known cluster is login.ErrBadCredentials
// without any review; one whose cluster cannot be known because an issuer
// discovery failed is login.ErrUnavailable.
func (rt *Router) Login(ctx context.Context, token string) (login.Identity, error) {
	r, err := rt.route(ctx, token)
	if err != nil {
		return login.Identity{}, err
	}
	requestinfo.SetCluster(ctx, r.name)
	id, err := r.login.Login(ctx, token)
	id.Cluster = r.name
	return id, err
}

// Authorize re-authorizes id at the cluster its refresh token names. A
// cluster the function no longer knows (or none: a refresh token of a
// single-cluster set-up) is login.ErrBadCredentials: log in again.
func (rt *Router) Authorize(ctx context.Context, id login.Identity) error {
	r, ok := rt.byName[id.Cluster]
	if !ok {
		rt.log.InfoContext(ctx, "refresh token names no cluster known here", "user", id.Name, "cluster", id.Cluster)
		return fmt.Errorf("%w: refresh token of cluster %q, which is not configured", login.ErrBadCredentials, id.Cluster)
	}
	requestinfo.SetCluster(ctx, r.name)
	return r.login.Authorize(ctx, id)
}

// ImageStreamClusters are the clusters whose users are decided per image
// stream (authorization: {imageStreams: true}), each with the namespace of
// its review for the upstream repository: policy.Options's
// ImageStreamClusters.
func (rt *Router) ImageStreamClusters() map[string]string {
	m := map[string]string{}
	for _, r := range rt.routes {
		if r.review != nil {
			m[r.name] = r.flatNamespace
		}
	}
	return m
}

// Review implements policy.Reviewer: it runs the review of res for id at
// the cluster id names (the one that authenticated the user at login; a
// refresh token carries it), never at another. A cluster that is not
// configured to review image streams, or not known at all, reviews
// nothing: login.ErrUnavailable, since the policy never asks it.
func (rt *Router) Review(ctx context.Context, id login.Identity, res policy.Resource) error {
	r, ok := rt.byName[id.Cluster]
	if !ok || r.review == nil {
		rt.log.ErrorContext(ctx, "image stream review for a cluster that reviews no image streams", "user", id.Name, "cluster", id.Cluster)
		return fmt.Errorf("%w: cluster %q does not review image streams", login.ErrUnavailable, id.Cluster)
	}
	return r.review.Review(ctx, id, res)
}

// Errors of routing, wrapped in login's errors.
var (
	errNoIssuer      = errors.New("JWT without a string iss claim")
	errUnknownIssuer = errors.New("no cluster has the token's issuer")
	errNoOpaque      = errors.New("an opaque token, and no cluster accepts opaque tokens")
)

// route chooses the cluster for token.
func (rt *Router) route(ctx context.Context, token string) (*route, error) {
	iss, jwt, err := untrustedIssuer(token)
	switch {
	case !jwt:
		if rt.opaque == nil {
			rt.log.InfoContext(ctx, "token routed to no cluster", "reason", errNoOpaque)
			return nil, fmt.Errorf("%w: %w", login.ErrBadCredentials, errNoOpaque)
		}
		return rt.opaque, nil
	case err != nil:
		rt.log.InfoContext(ctx, "token routed to no cluster", "reason", err)
		return nil, fmt.Errorf("%w: %w", login.ErrBadCredentials, err)
	}
	if r, err := rt.known(ctx, iss); r != nil || err != nil {
		return r, err
	}
	// No cluster known so far has iss: find the issuers not known yet.
	var failed []string
	for _, r := range rt.routes {
		if r.discover == nil || r.issuer() != "" {
			continue
		}
		if err := r.find(ctx); err != nil {
			rt.log.ErrorContext(ctx, "cluster issuer discovery failed", "cluster", r.name, "error", err)
			failed = append(failed, r.name)
		}
	}
	if r, err := rt.known(ctx, iss); r != nil || err != nil {
		return r, err
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%w: the token's issuer %q is no known cluster's, and the issuer of %s could not be found",
			login.ErrUnavailable, clip(iss), strings.Join(failed, ", "))
	}
	rt.log.InfoContext(ctx, "token routed to no cluster", "reason", errUnknownIssuer, "issuer", clip(iss))
	return nil, fmt.Errorf("%w: %w: %q", login.ErrBadCredentials, errUnknownIssuer, clip(iss))
}

// known is the one cluster whose listed or discovered issuers hold iss, or
// nil. Two would be a discovered issuer that another cluster lists too: the
// token goes to neither, and the log says to list the issuers.
func (rt *Router) known(ctx context.Context, iss string) (*route, error) {
	match := rt.match(iss)
	switch len(match) {
	case 0:
		return nil, nil
	case 1:
		return match[0], nil
	}
	names := make([]string, len(match))
	for i, r := range match {
		names[i] = r.name
	}
	rt.log.ErrorContext(ctx, "clusters share an issuer: list each cluster's issuers in QCI_CLUSTERS_FILE", "issuer", clip(iss), "clusters", names)
	return nil, fmt.Errorf("%w: clusters %s share the issuer %q", login.ErrUnavailable, strings.Join(names, ", "), clip(iss))
}

// match are the clusters whose listed or discovered issuers hold iss.
func (rt *Router) match(iss string) []*route {
	var match []*route
	for _, r := range rt.routes {
		if slices.Contains(r.issuers, iss) || (r.discover != nil && r.issuer() == iss) {
			match = append(match, r)
		}
	}
	return match
}

func (r *route) issuer() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.discovered
}

// discoveryTimeout bounds one issuer discovery, whoever waits for it.
const discoveryTimeout = 10 * time.Second

// find discovers r's issuer once: concurrent callers share one request, a
// failure is not kept (the next token tries again).
func (r *route) find(ctx context.Context) error {
	ch := r.flight.DoChan("", func() (any, error) {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), discoveryTimeout)
		defer cancel()
		iss, err := r.discover(dctx)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.discovered = iss
		r.mu.Unlock()
		return nil, nil
	})
	select {
	case <-ctx.Done():
		return ctx.Err()
	case res := <-ch:
		return res.Err
	}
}

// untrustedIssuer reads the iss claim of a compact JWT without verifying
// it, as k8s.io/apiserver's OIDC authenticator does, only to choose the
// cluster that verifies it. jwt is false for a token that is not three
// dot-separated segments (an opaque token).
func untrustedIssuer(token string) (iss string, jwt bool, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false, nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", true, fmt.Errorf("JWT payload is not base64url: %w", err)
	}
	var claims struct {
		Issuer *string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Issuer == nil || *claims.Issuer == "" {
		return "", true, errNoIssuer
	}
	return *claims.Issuer, true, nil
}

// clip bounds what a token's claim puts into a log line or message.
func clip(s string) string {
	if len(s) > 256 {
		return s[:256] + "…"
	}
	return s
}
