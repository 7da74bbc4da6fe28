package login

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"golang.org/x/sync/singleflight"

	"github.com/qci-appci/qci-appci/function/metrics"
)

// The access a cluster user needs: pull from the image streams of a namespace.
const (
	reviewVerb        = "get"
	reviewGroup       = "image.openshift.io"
	reviewResource    = "imagestreams"
	reviewSubresource = "layers"
)

// deniedTTL is how long a denial or a rejected token is remembered.
const deniedTTL = 10 * time.Second

// reviewTimeout bounds one review, whoever waits for it.
const reviewTimeout = 15 * time.Second

// maxCacheEntries bounds the review cache; expired entries go first.
const maxCacheEntries = 4096

// ClusterOptions configure cluster logins.
type ClusterOptions struct {
	// Kubeconfig is the cluster's kubeconfig file; empty: in-cluster config.
	Kubeconfig string
	// Namespace is where the SubjectAccessReview asks for pull.
	Namespace string
	// Audiences are the TokenReview spec.audiences; empty: the API default.
	Audiences []string
	// CacheTTL is the longest an allowed review is reused.
	CacheTTL time.Duration
	// Logger receives why a review failed.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Authorize, when set, decides who may pull instead of the
	// SubjectAccessReview (a cluster whose pulling service accounts are
	// listed in QCI_CLUSTERS_FILE): nil, or ErrDenied.
	Authorize func(ctx context.Context, id Identity) error
	// Metrics count reviews and review cache hits; nil: not counted.
	Metrics *metrics.Metrics
}

// Cluster logs users in with cluster tokens. Its clients are built on first
// use, so start-up does not read or dial anything.
type Cluster struct {
	opts ClusterOptions

	mu      sync.Mutex
	clients *clusterClients

	cacheMu sync.Mutex
	cache   map[[sha256.Size]byte]cacheEntry
	flight  singleflight.Group
}

// clusterClients post the two reviews. They are REST clients on a scheme
// that knows only the review types, not client-go's typed clientsets:
// those register every API group of Kubernetes at start-up, which a
// scale-to-zero instance pays on every cold start.
type clusterClients struct {
	authn *rest.RESTClient
	authz *rest.RESTClient
}

type cacheEntry struct {
	id      Identity
	err     error
	expires time.Time
}

type reviewResult struct {
	id  Identity
	err error
}

// ClusterConfigured reports whether cluster login is possible: a kubeconfig
// is given, or the process runs in a pod with a service account.
func ClusterConfigured(kubeconfig string) bool {
	if kubeconfig != "" {
		return true
	}
	if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
		return false
	}
	_, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/token")
	return err == nil
}

// NewCluster returns a cluster login; it does not contact the cluster.
func NewCluster(opts ClusterOptions) *Cluster {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Cluster{opts: opts, cache: make(map[[sha256.Size]byte]cacheEntry)}
}

// Login reviews token: ErrBadCredentials when the cluster does not
// authenticate it, ErrDenied when its user may not pull, ErrUnavailable
// (wrapped with the cause) when the cluster cannot say. Answers are cached
// under a hash of the token; concurrent logins with one token share a review.
func (c *Cluster) Login(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	e, ok := c.cached(key)
	c.opts.Metrics.ReviewCache(ok)
	if ok {
		return e.id, e.err
	}
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		id, err := c.review(rctx, token)
		c.remember(key, id, err)
		return reviewResult{id, err}, nil
	})
	select {
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	case r := <-ch:
		res := r.Val.(reviewResult)
		return res.id, res.err
	}
}

// Authorize runs a fresh SubjectAccessReview for id, never cached: a
// refresh re-authorizes the user.
func (c *Cluster) Authorize(ctx context.Context, id Identity) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	return c.authorize(ctx, cl, id)
}

func (c *Cluster) cached(key [sha256.Size]byte) (cacheEntry, bool) {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	e, ok := c.cache[key]
	if !ok {
		return e, false
	}
	if !c.opts.Now().Before(e.expires) {
		delete(c.cache, key)
		return e, false
	}
	return e, true
}

func (c *Cluster) remember(key [sha256.Size]byte, id Identity, err error) {
	var ttl time.Duration
	switch {
	case err == nil:
		ttl = c.opts.CacheTTL
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrDenied):
		ttl = deniedTTL
	}
	if ttl <= 0 {
		return
	}
	now := c.opts.Now()
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if len(c.cache) >= maxCacheEntries {
		for k, e := range c.cache {
			if !now.Before(e.expires) {
				delete(c.cache, k)
			}
		}
		if len(c.cache) >= maxCacheEntries {
			clear(c.cache)
		}
	}
	c.cache[key] = cacheEntry{id: id, err: err, expires: now.Add(ttl)}
}

// client builds the cluster clients on first use; a failure is not kept, so
// a later login tries again.
func (c *Cluster) client() (*clusterClients, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients != nil {
		return c.clients, nil
	}
	cfg, err := c.restConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	codecs, err := reviewCodecs()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	authn, err := restClient(cfg, codecs, authenticationv1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication client: %w", ErrUnavailable, err)
	}
	authz, err := restClient(cfg, codecs, authorizationv1.SchemeGroupVersion)
	if err != nil {
		return nil, fmt.Errorf("%w: authorization client: %w", ErrUnavailable, err)
	}
	c.clients = &clusterClients{authn: authn, authz: authz}
	return c.clients, nil
}

// reviewCodecs encode and decode TokenReview, SubjectAccessReview and the
// API server's Status answers.
func reviewCodecs() (serializer.CodecFactory, error) {
	scheme := runtime.NewScheme()
	if err := authenticationv1.AddToScheme(scheme); err != nil {
		return serializer.CodecFactory{}, fmt.Errorf("scheme: %w", err)
	}
	if err := authorizationv1.AddToScheme(scheme); err != nil {
		return serializer.CodecFactory{}, fmt.Errorf("scheme: %w", err)
	}
	metav1.AddToGroupVersion(scheme, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(scheme), nil
}

// restClient is a client of one API group version, as client-go's typed
// clients configure theirs.
func restClient(cfg *rest.Config, codecs serializer.CodecFactory, gv schema.GroupVersion) (*rest.RESTClient, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.GroupVersion = &gv
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	return rest.RESTClientFor(cfg)
}

func (c *Cluster) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if c.opts.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", c.opts.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig %s: %w", c.opts.Kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config: %w", err)
		}
	}
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/json"
	cfg.AcceptContentTypes = "application/json"
	cfg.UserAgent = "qci-appci"
	cfg.QPS = -1 // no client-side throttling of logins
	cfg.Timeout = reviewTimeout
	return cfg, nil
}

func (c *Cluster) review(ctx context.Context, token string) (Identity, error) {
	cl, err := c.client()
	if err != nil {
		return Identity{}, err
	}
	tr := &authenticationv1.TokenReview{}
	err = cl.authn.Post().Resource("tokenreviews").Body(&authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: c.opts.Audiences},
	}).Do(ctx).Into(tr)
	c.opts.Metrics.ClusterReview(metrics.ReviewToken, tokenReviewResult(err, tr, c.opts.Audiences))
	if err != nil {
		return Identity{}, c.apiError("TokenReview", err)
	}
	if !tr.Status.Authenticated {
		c.opts.Logger.InfoContext(ctx, "cluster token not authenticated", "reason", tr.Status.Error)
		return Identity{}, ErrBadCredentials
	}
	if len(c.opts.Audiences) > 0 && !intersects(tr.Status.Audiences, c.opts.Audiences) {
		c.opts.Logger.InfoContext(ctx, "cluster token not bound to an accepted audience",
			"user", tr.Status.User.Username, "token_audiences", tr.Status.Audiences)
		return Identity{}, ErrBadCredentials
	}
	u := tr.Status.User
	id := Identity{Name: u.Username, UID: u.UID, Groups: u.Groups}
	if len(u.Extra) > 0 {
		id.Extra = make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			id.Extra[k] = []string(v)
		}
	}
	if err := c.authorize(ctx, cl, id); err != nil {
		return id, err
	}
	return id, nil
}

func (c *Cluster) authorize(ctx context.Context, cl *clusterClients, id Identity) error {
	if c.opts.Authorize != nil {
		return c.opts.Authorize(ctx, id)
	}
	spec := authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace:   c.opts.Namespace,
			Verb:        reviewVerb,
			Group:       reviewGroup,
			Resource:    reviewResource,
			Subresource: reviewSubresource,
		},
		User:   id.Name,
		UID:    id.UID,
		Groups: id.Groups,
	}
	if len(id.Extra) > 0 {
		spec.Extra = make(map[string]authorizationv1.ExtraValue, len(id.Extra))
		for k, v := range id.Extra {
			spec.Extra[k] = authorizationv1.ExtraValue(v)
		}
	}
	sar := &authorizationv1.SubjectAccessReview{}
	err := cl.authz.Post().Resource("subjectaccessreviews").Body(&authorizationv1.SubjectAccessReview{Spec: spec}).Do(ctx).Into(sar)
	c.opts.Metrics.ClusterReview(metrics.ReviewAccess, accessReviewResult(err, sar))
	if err != nil {
		return c.apiError("SubjectAccessReview", err)
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		c.opts.Logger.InfoContext(ctx, "cluster user may not pull", "user", id.Name,
			"namespace", c.opts.Namespace, "reason", sar.Status.Reason, "evaluation_error", sar.Status.EvaluationError)
		return ErrDenied
	}
	return nil
}

// apiError turns a failed review call into ErrUnavailable, saying in the log
// what an operator has to fix.
func (c *Cluster) apiError(call string, err error) error {
	if apierrors.IsForbidden(err) {
		c.opts.Logger.Error("cluster refused the review: the service account lacks system:auth-delegator (TokenReview and SubjectAccessReview create)",
			"call", call, "error", err)
		return fmt.Errorf("%w: %s forbidden, the service account lacks system:auth-delegator: %w", ErrUnavailable, call, err)
	}
	c.opts.Logger.Error("cluster API unavailable", "call", call, "error", err)
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, call, err)
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
