// Package policy decides, at /v2/auth, which of the requested pull scopes a
// login is granted: the robot every served repository, a cluster user each
// image stream that a SubjectAccessReview allows (get imagestreams/layers
// on that image stream) or that is open to every authenticated user, and
// the upstream repository itself when the namespace-wide review allows it.
// Each scope is decided on its own; the reviews of one request run
// concurrently and are cached per cluster, user and image stream. With
// QCI_CLUSTERS_FILE, the users of a cluster that authorized them at login
// are granted the whole mirror instead (Authorized), and those of a
// cluster that reviews image streams are decided as above, the reviews
// asked of their own cluster.
package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/reviewcache"
)

// Resource is what one review asks about: get on imagestreams/layers
// (group image.openshift.io) in Namespace, on the image stream Name, or
// on every image stream of the namespace when Name is empty.
type Resource struct {
	Namespace, Name string
}

// String names the resource for logs and messages.
func (r Resource) String() string {
	if r.Name == "" {
		return "imagestreams/layers in namespace " + r.Namespace
	}
	return "imagestreams/layers " + r.Name + " in namespace " + r.Namespace
}

// Reviewer runs one SubjectAccessReview for id on res: nil when allowed,
// an error matching login.ErrDenied when not, any other error (wrapping
// login.ErrUnavailable) when the cluster cannot say.
type Reviewer interface {
	Review(ctx context.Context, id login.Identity, res Resource) error
}

// ReviewFunc is a Reviewer of a function taking the namespace and name,
// such as (*login.Cluster).ReviewImageStream.
type ReviewFunc func(ctx context.Context, id login.Identity, namespace, name string) error

// Review implements Reviewer.
func (f ReviewFunc) Review(ctx context.Context, id login.Identity, res Resource) error {
	return f(ctx, id, res.Namespace, res.Name)
}

// Limits of one decision and of the cache.
const (
	// MaxScopes is the most pull scopes of one token request that are
	// decided; further ones are dropped, as any scope not granted is.
	MaxScopes = 16
	// deniedTTL is how long a denial is remembered.
	deniedTTL = 10 * time.Second
	// allowedEntries and deniedEntries bound the two LRUs of the cache.
	allowedEntries = 4096
	deniedEntries  = 4096
)

// errNoReviewer answers the reviews of a policy without a Reviewer.
var errNoReviewer = fmt.Errorf("%w: no cluster reviews image streams here", login.ErrUnavailable)

// Options configure a Policy.
type Options struct {
	// Upstream is the upstream repository, served under its own name.
	Upstream string
	// Flat grants the upstream repository to cluster users whom a review
	// in FlatNamespace allows (every image stream of it); false: never.
	Flat bool
	// FlatNamespace is the namespace of the upstream repository's review.
	FlatNamespace string
	// Open are the namespaces and image streams every authenticated
	// cluster user may pull without a review.
	Open Open
	// ImageStreamClusters are the clusters of QCI_CLUSTERS_FILE whose
	// users are decided per image stream (Decide), as a single cluster's
	// are: each name maps to the namespace of that cluster's review for
	// the upstream repository, which FlatNamespace is for a single
	// cluster. A user of any other cluster of the file was authorized at
	// login for the whole mirror (Authorized).
	ImageStreamClusters map[string]string
	// Reviewer runs the reviews; nil: every review is unavailable. With
	// ImageStreamClusters, it must ask the cluster the identity names.
	Reviewer Reviewer
	// CacheTTL is the longest an allowed review is reused.
	CacheTTL time.Duration
	// Metrics count the review cache's hits and misses (a fresh review on
	// refresh counts as neither); nil: not counted.
	Metrics *metrics.Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// ReviewTimeout bounds one review, whoever waits for it, as a login's;
	// zero means login.DefaultReviewTimeout.
	ReviewTimeout time.Duration
	// ReviewRate and ReviewBurst limit the fresh (uncached) reviews of one
	// cluster identity (cluster, user, uid): a token bucket refilled at
	// ReviewRate a second, of ReviewBurst (at least MaxScopes). Zero means
	// DefaultReviewRate, DefaultReviewBurst.
	ReviewRate  float64
	ReviewBurst int
}

// Policy decides grants. It keeps a cache of review answers and is safe for
// concurrent use.
type Policy struct {
	opts    Options
	mapping registry.Mapping

	// The answers, allowed and denied in two LRUs: a flood of denials (a
	// user asking for image streams at random) evicts only older denials,
	// never an allowed answer. The value is the answer: nil (allowed) or
	// login.ErrDenied.
	cache *reviewcache.Cache[error]
	// flight shares one review among the callers of one question, and
	// cancels it when none of them waits any more.
	flight reviewcache.Flight[error]
	// limit bounds the fresh reviews per identity.
	limit *reviewLimit
}

// New returns a policy.
func New(opts Options) *Policy {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReviewTimeout <= 0 {
		opts.ReviewTimeout = login.DefaultReviewTimeout
	}
	return &Policy{
		opts:    opts,
		mapping: registry.Mapping{Upstream: opts.Upstream},
		cache:   reviewcache.New[error](allowedEntries, deniedEntries),
		limit:   newReviewLimit(opts.ReviewRate, opts.ReviewBurst),
	}
}

// Pulls are the distinct repositories of requested that ask for pull (or
// "*") and are served here (the upstream repository, or an image stream),
// in the order asked, at most MaxScopes of them. Anything else is not
// grantable and not counted as asked.
func (p *Policy) Pulls(requested []registry.Scope) []string {
	var repos []string
	for _, s := range requested {
		if s.Type != "repository" || !slices.ContainsFunc(s.Actions, func(a string) bool { return a == "pull" || a == "*" }) ||
			!p.mapping.Serves(s.Name) || slices.Contains(repos, s.Name) {
			continue
		}
		if len(repos) == MaxScopes {
			break
		}
		repos = append(repos, s.Name)
	}
	return repos
}

// Robot is the robot's grant: pull on every served repository asked.
func (p *Policy) Robot(requested []registry.Scope) []registry.Scope {
	return pullScopes(p.Pulls(requested))
}

// PerImageStream reports whether the users of cluster (a name of
// QCI_CLUSTERS_FILE, or "" for the single cluster) are decided per image
// stream (Decide) rather than granted the whole mirror (Authorized).
func (p *Policy) PerImageStream(cluster string) bool {
	if cluster == "" {
		return true
	}
	_, ok := p.opts.ImageStreamClusters[cluster]
	return ok
}

// flatNamespace is the namespace of the upstream repository's review for
// the users of cluster, and false when they have none.
func (p *Policy) flatNamespace(cluster string) (string, bool) {
	if cluster == "" {
		return p.opts.FlatNamespace, true
	}
	ns, ok := p.opts.ImageStreamClusters[cluster]
	return ns, ok && ns != ""
}

// Authorized is the grant of a user whom their cluster authorized for the
// whole mirror at login (a cluster of QCI_CLUSTERS_FILE): pull on every
// served repository asked, but the upstream repository only when Flat.
func (p *Policy) Authorized(requested []registry.Scope) []registry.Scope {
	repos := p.Pulls(requested)
	if !p.opts.Flat {
		repos = slices.DeleteFunc(repos, func(r string) bool { return r == p.opts.Upstream })
	}
	return pullScopes(repos)
}

func pullScopes(repos []string) []registry.Scope {
	var scopes []registry.Scope
	for _, r := range repos {
		scopes = append(scopes, registry.PullScope(r))
	}
	return scopes
}

// Decision is the outcome for a cluster user's requested scopes.
type Decision struct {
	// Asked are the served repositories asked for pull (Pulls).
	Asked []string
	// Granted are the pull scopes granted.
	Granted []registry.Scope
	// Denied are the repositories whose review said no, or that are not
	// open to cluster users at all.
	Denied []string
	// Err joins the failures of reviews that could not be decided (each
	// wraps login.ErrUnavailable); those repositories are neither granted
	// nor denied.
	Err error
	// Limited, when set, refuses the whole request: it needed fresh
	// reviews and the identity is past its limit of them. Nothing is
	// granted or denied; the reviews that fitted the limit were asked
	// and their answers cached, for the retry.
	Limited *LimitedError

	// flatNamespace is the namespace of the upstream repository's review
	// for the user's cluster.
	flatNamespace string
}

// Refused reports whether something was asked and nothing granted (a
// Limited decision among them).
func (d Decision) Refused() bool { return len(d.Asked) > 0 && len(d.Granted) == 0 }

// DeniedMessage is the 403 message for user's decision whose every scope
// was denied: it names the user, the repositories, and the permission
// each needs.
func (p *Policy) DeniedMessage(user string, d Decision) string {
	needs := make([]string, 0, len(d.Denied))
	for _, repo := range d.Denied {
		if repo == p.opts.Upstream {
			if !p.opts.Flat {
				needs = append(needs, repo+" (not open to cluster users here: pull <namespace>/<image stream> instead)")
			} else {
				needs = append(needs, repo+" (needs "+login.PullPermission(d.flatNamespace)+")")
			}
			continue
		}
		s, _ := registry.ParseImageStream(repo)
		needs = append(needs, repo+" (needs "+login.ImageStreamPullPermission(s.Namespace, s.Name)+")")
	}
	return fmt.Sprintf("authenticated as %q, but not allowed to pull %s", user, strings.Join(needs, ", "))
}

// need is how one repository is decided.
type need struct {
	repo   string
	open   bool     // granted without a review
	never  bool     // denied without a review
	review Resource // else: this review decides
}

// needOf is how repo is decided for a user of cluster.
func (p *Policy) needOf(repo, cluster string) need {
	if repo == p.opts.Upstream {
		ns, ok := p.flatNamespace(cluster)
		if !p.opts.Flat || !ok {
			return need{repo: repo, never: true}
		}
		return need{repo: repo, review: Resource{Namespace: ns}}
	}
	s, _ := registry.ParseImageStream(repo) // Pulls kept only served names
	if p.opts.Open.Allows(s) {
		return need{repo: repo, open: true}
	}
	return need{repo: repo, review: Resource{Namespace: s.Namespace, Name: s.Name}}
}

// Decide decides each requested pull scope for the cluster user id (of
// the single cluster, or of the cluster of ImageStreamClusters that
// id.Cluster names), the reviews concurrently. With fresh (a refresh), no
// cached answer is used: every review is asked again (its answer is still
// kept). Each review that goes to the cluster takes one from id's limit
// of fresh reviews (one that joins a review in flight takes nothing): when
// any could not start for it, the decision is Limited.
func (p *Policy) Decide(ctx context.Context, id login.Identity, requested []registry.Scope, fresh bool) Decision {
	d := Decision{Asked: p.Pulls(requested)}
	d.flatNamespace, _ = p.flatNamespace(id.Cluster)
	results := make([]error, len(d.Asked))
	needs := make([]need, len(d.Asked))
	var toReview []int
	for i, repo := range d.Asked {
		n := p.needOf(repo, id.Cluster)
		needs[i] = n
		switch {
		case n.open:
		case n.never:
			results[i] = login.ErrDenied
		default:
			if !fresh {
				err, ok := p.cache.Get(cacheKey(id, n.review), p.opts.Now())
				p.opts.Metrics.ReviewCache(ok)
				if ok {
					results[i] = err
					continue
				}
			}
			toReview = append(toReview, i)
		}
	}
	var wg sync.WaitGroup
	for _, i := range toReview {
		wg.Go(func() { results[i] = p.review(ctx, id, needs[i].review) })
	}
	wg.Wait()
	limited, newly := 0, false
	for _, err := range results {
		var le *LimitedError
		if errors.As(err, &le) {
			limited++
			newly = newly || le.Newly
		}
	}
	if limited > 0 {
		// The reviews that could start ran and are cached for the retry.
		return Decision{Asked: d.Asked, flatNamespace: d.flatNamespace, Limited: &LimitedError{
			RetryAfter: p.limit.retryAfter(p.opts.Now(), id, limited),
			Newly:      newly,
		}}
	}
	var errs []error
	for i, n := range needs {
		switch err := results[i]; {
		case err == nil:
			d.Granted = append(d.Granted, registry.PullScope(n.repo))
		case errors.Is(err, login.ErrDenied):
			d.Denied = append(d.Denied, n.repo)
		default:
			errs = append(errs, fmt.Errorf("%s: %w", n.repo, err))
		}
	}
	d.Err = errors.Join(errs...)
	return d
}

// review asks whether id may get res; concurrent askers of one question
// share one review, which is cancelled when none of them waits any more
// and ends after ReviewTimeout in any case. Its answer is cached.
func (p *Policy) review(ctx context.Context, id login.Identity, res Resource) error {
	key := cacheKey(id, res)
	err, abandoned := p.flight.Do(ctx, key, func() (context.Context, context.CancelFunc, error) {
		// Only a review that starts takes from id's limit: askers who
		// join one in flight (a fleet of pods of one service account
		// starting at once) share its token as they share its answer.
		if le := p.limit.take(p.opts.Now(), id, 1); le != nil {
			return nil, nil, le
		}
		rctx, cancel := reviewcache.Detached(ctx, p.opts.ReviewTimeout)
		return rctx, cancel, nil
	}, func(rctx context.Context) error {
		err := errNoReviewer
		if p.opts.Reviewer != nil {
			err = p.opts.Reviewer.Review(rctx, id, res)
		}
		p.remember(key, err)
		return err
	})
	var le *LimitedError
	if errors.As(abandoned, &le) {
		return le
	}
	if abandoned != nil {
		return fmt.Errorf("%w: review abandoned: %w", login.ErrUnavailable, abandoned)
	}
	return err
}

// cacheKey hashes everything a review depends on: the cluster that
// reviews, the user, uid, groups and extra (sorted, each part
// length-prefixed so that no two differ only in where one part ends), and
// the resource. Users of two clusters never share an answer.
func cacheKey(id login.Identity, res Resource) reviewcache.Key {
	h := sha256.New()
	put := func(s string) { _, _ = fmt.Fprintf(h, "%d:%s", len(s), s) }
	put(id.Cluster)
	put(id.Name)
	put(id.UID)
	groups := slices.Clone(id.Groups)
	sort.Strings(groups)
	put(fmt.Sprint(len(groups)))
	for _, g := range groups {
		put(g)
	}
	keys := make([]string, 0, len(id.Extra))
	for k := range id.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	put(fmt.Sprint(len(keys)))
	for _, k := range keys {
		put(k)
		put(fmt.Sprint(len(id.Extra[k])))
		for _, v := range id.Extra[k] {
			put(v)
		}
	}
	put(res.Namespace)
	put(res.Name)
	var key reviewcache.Key
	h.Sum(key[:0])
	return key
}

// remember keeps an allowed answer for CacheTTL and a denial for
// deniedTTL; a failure (a cancelled review's among them) is not kept.
func (p *Policy) remember(key reviewcache.Key, err error) {
	if p.opts.CacheTTL <= 0 {
		return
	}
	now := p.opts.Now()
	switch {
	case err == nil:
		p.cache.AddAllowed(key, nil, now.Add(p.opts.CacheTTL))
	case errors.Is(err, login.ErrDenied):
		p.cache.AddDenied(key, login.ErrDenied, now.Add(min(deniedTTL, p.opts.CacheTTL)))
	}
}
