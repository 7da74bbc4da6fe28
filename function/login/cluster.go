package login

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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

	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/reviewcache"
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

// DefaultReviewTimeout bounds one review (TokenReview and
// SubjectAccessReview together), whoever waits for it. A healthy API
// server answers in milliseconds; a login that waits longer than this is
// better told "try again" than kept with a goroutine and an API call.
const DefaultReviewTimeout = 5 * time.Second

// Sizes of the two review caches. Allowed and refused answers live in
// separate LRUs, so no number of bogus tokens evicts an allowed login.
// Refusals are kept 10 s only, to spare the cluster a client that retries
// one bad token; 1,024 of them cover that and keep a flood's memory small.
const (
	allowedCacheEntries = 4096
	deniedCacheEntries  = 1024
)

// DefaultMaxReviews is the default cap on reviews in flight at once.
const DefaultMaxReviews = 32

// ClusterOptions configure cluster logins.
type ClusterOptions struct {
	// Name is the cluster's name in QCI_CLUSTERS_FILE; empty for the single
	// cluster. Authorize refuses an identity of another cluster.
	Name string
	// Kubeconfig is the cluster's kubeconfig file; empty: in-cluster config.
	Kubeconfig string
	// Namespace is where Login's SubjectAccessReview asks for pull (every
	// image stream of it). Empty: Login only authenticates the token, and
	// what the user may pull is asked per image stream (ReviewImageStream).
	Namespace string
	// Audiences are the TokenReview spec.audiences; empty: the API default.
	Audiences []string
	// CacheTTL is the longest an allowed review is reused.
	CacheTTL time.Duration
	// MaxReviews caps the reviews in flight; past it a login that needs a
	// review fails at once with ErrBusy. Zero means DefaultMaxReviews.
	MaxReviews int
	// ReviewTimeout bounds one review; zero means DefaultReviewTimeout.
	ReviewTimeout time.Duration
	// Logger receives why a review failed.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics count reviews and review cache hits; nil: not counted.
	Metrics *metrics.Metrics
	// Authorize, when set, decides who may pull instead of the
	// SubjectAccessReview (a cluster whose pulling service accounts are
	// listed in QCI_CLUSTERS_FILE): nil, or ErrDenied.
	Authorize func(ctx context.Context, id Identity) error
}

// Cluster logs users in with cluster tokens. Its clients are built on first
// use, so start-up does not read or dial anything.
type Cluster struct {
	opts ClusterOptions

	mu      sync.Mutex
	clients *clusterClients

	// cache keeps answers under the SHA-256 of the token; flight shares
	// one review among the logins with one token.
	cache  *reviewcache.Cache[Answer]
	flight reviewcache.Flight[Answer]
	slots  chan struct{} // one token per review in flight
}

// clusterClients post the two reviews. They are REST clients on a scheme
// that knows only the review types, not client-go's typed clientsets:
// those register every API group of Kubernetes at start-up, which a
// scale-to-zero instance pays on every cold start.
type clusterClients struct {
	authn *rest.RESTClient
	authz *rest.RESTClient
}

// Answer is a cached review outcome: an identity, or the login's error.
type Answer struct {
	Identity Identity
	Err      error
}

// DeniedError is the ErrDenied of a user the SubjectAccessReview did not
// allow; it names what the user lacks.
type DeniedError struct {
	// User is the cluster user.
	User string
	// Namespace is the namespace of the review.
	Namespace string
	// ImageStream is the image stream of the review; empty: every one of
	// the namespace.
	ImageStream string
	// Reason is the authorizer's reason, if it gave one.
	Reason string
}

// Error says who lacks which permission where.
func (e *DeniedError) Error() string {
	perm := PullPermission(e.Namespace)
	if e.ImageStream != "" {
		perm = ImageStreamPullPermission(e.Namespace, e.ImageStream)
	}
	msg := fmt.Sprintf("%s: user %q lacks %s", ErrDenied, e.User, perm)
	if e.Reason != "" {
		msg += " (" + e.Reason + ")"
	}
	return msg
}

// Is makes errors.Is(err, ErrDenied) true.
func (e *DeniedError) Is(target error) bool { return target == ErrDenied }

// PullPermission describes the permission a cluster user needs to pull.
func PullPermission(namespace string) string {
	return fmt.Sprintf("%s %s/%s (group %s) in namespace %s", reviewVerb, reviewResource, reviewSubresource, reviewGroup, namespace)
}

// ImageStreamPullPermission describes the permission a cluster user needs
// to pull from the image stream name of namespace.
func ImageStreamPullPermission(namespace, name string) string {
	return fmt.Sprintf("%s %s/%s %s (group %s) in namespace %s", reviewVerb, reviewResource, reviewSubresource, name, reviewGroup, namespace)
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
	if opts.MaxReviews <= 0 {
		opts.MaxReviews = DefaultMaxReviews
	}
	if opts.ReviewTimeout <= 0 {
		opts.ReviewTimeout = DefaultReviewTimeout
	}
	return &Cluster{
		opts:  opts,
		cache: reviewcache.New[Answer](allowedCacheEntries, deniedCacheEntries),
		slots: make(chan struct{}, opts.MaxReviews),
	}
}

// Cached returns the cached answer for token, if there is one that has
// not expired. It never contacts the cluster. A hit is counted as a review
// cache hit; a miss is counted by the Login that follows it.
func (c *Cluster) Cached(token string) (Answer, bool) {
	a, ok := c.cache.Get(sha256.Sum256([]byte(token)), c.opts.Now())
	if ok {
		c.opts.Metrics.ReviewCache(true)
	}
	return a, ok
}

// Login reviews token: ErrBadCredentials when it is not a plausible token
// or the cluster does not authenticate it, ErrDenied when its user may not
// pull (the Authorize hook, or the review in Namespace; with neither, no
// review), ErrBusy when MaxReviews reviews are in flight already,
// ErrUnavailable (wrapped with the cause) when the cluster cannot say, and
// ctx's error when the caller stops waiting. Answers are cached under a
// hash of the token; concurrent logins with one token share a review, which
// is cancelled when none of them waits any more.
func (c *Cluster) Login(ctx context.Context, token string) (Identity, error) {
	if !PlausibleToken(token) {
		return Identity{}, fmt.Errorf("%w: the password is not a plausible cluster token (%d bytes)", ErrBadCredentials, len(token))
	}
	key := sha256.Sum256([]byte(token))
	a, ok := c.cache.Get(key, c.opts.Now())
	c.opts.Metrics.ReviewCache(ok)
	if ok {
		return a.Identity, a.Err
	}
	a, err := c.flight.Do(ctx, key, func() (context.Context, context.CancelFunc, error) {
		if !c.acquire() {
			return nil, nil, ErrBusy
		}
		rctx, cancel := reviewcache.Detached(ctx, c.opts.ReviewTimeout)
		return rctx, cancel, nil
	}, func(rctx context.Context) Answer {
		defer c.release()
		id, err := c.review(rctx, token)
		if rctx.Err() == nil || err == nil {
			c.remember(key, id, err)
		}
		return Answer{id, err}
	})
	switch {
	case errors.Is(err, ErrBusy):
		return Identity{}, err
	case err != nil:
		return Identity{}, fmt.Errorf("login abandoned: %w", err)
	}
	return a.Identity, a.Err
}

// Authorize re-authorizes id as Login does (the Authorize hook, or the
// namespace review), never cached: a refresh re-authorizes the user. With
// neither (no Namespace) it checks nothing: the refresh's scopes are
// reviewed per image stream. The namespace review takes a review slot like
// Login (ErrBusy when none is free); the Authorize hook decides in memory,
// so it takes no slot and never contacts the cluster.
func (c *Cluster) Authorize(ctx context.Context, id Identity) error {
	if id.Cluster != c.opts.Name {
		// A refresh token of another cluster (one issued before the
		// clusters changed, under the same signing keys): log in again.
		return fmt.Errorf("%w: refresh token of cluster %q, not of this one (%q)", ErrBadCredentials, id.Cluster, c.opts.Name)
	}
	switch {
	case c.opts.Authorize != nil:
		return c.opts.Authorize(ctx, id)
	case c.opts.Namespace == "":
		return nil
	}
	return c.inSlot(ctx, func(ctx context.Context, cl *clusterClients) error {
		return c.accessReview(ctx, cl, id, c.opts.Namespace, "")
	})
}

// ReviewImageStream runs one SubjectAccessReview for id, never cached
// here: may id get imagestreams/layers (group image.openshift.io) on the
// image stream name in namespace, or on every image stream of it when name
// is empty. nil when allowed, a DeniedError when not, ErrBusy when
// MaxReviews reviews are in flight already, ErrUnavailable (wrapped) when
// the cluster cannot say. It takes a review slot like Login.
func (c *Cluster) ReviewImageStream(ctx context.Context, id Identity, namespace, name string) error {
	return c.inSlot(ctx, func(ctx context.Context, cl *clusterClients) error {
		return c.accessReview(ctx, cl, id, namespace, name)
	})
}

// inSlot runs review with the cluster's clients in a review slot, within
// ReviewTimeout: ErrBusy at once when every slot is taken.
func (c *Cluster) inSlot(ctx context.Context, review func(context.Context, *clusterClients) error) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	if !c.acquire() {
		return ErrBusy
	}
	defer c.release()
	ctx, cancel := context.WithTimeout(ctx, c.opts.ReviewTimeout)
	defer cancel()
	return review(ctx, cl)
}

// acquire takes a review slot without waiting.
func (c *Cluster) acquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Cluster) release() { <-c.slots }

func (c *Cluster) remember(key reviewcache.Key, id Identity, err error) {
	now := c.opts.Now()
	switch {
	case err == nil:
		if c.opts.CacheTTL > 0 {
			c.cache.AddAllowed(key, Answer{Identity: id}, now.Add(c.opts.CacheTTL))
		}
	case errors.Is(err, ErrBadCredentials), errors.Is(err, ErrDenied):
		c.cache.AddDenied(key, Answer{Err: err}, now.Add(deniedTTL))
	}
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
	// client-go's own throttle stays off. Its token bucket makes a caller
	// wait (up to the review timeout) rather than fail, so under a flood it
	// would queue real users behind bogus tokens and hold their goroutines.
	// What bounds the load on the cluster instead: the failed-login limit
	// of the auth handler (before any review), MaxReviews in flight (past
	// it ErrBusy at once), ReviewTimeout, and the caches; the API server's
	// priority and fairness protects itself from the rest.
	cfg.QPS = -1
	cfg.Timeout = c.opts.ReviewTimeout
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
	c.opts.Metrics.ClusterReview(c.opts.Name, metrics.ReviewToken, tokenReviewResult(err, tr, c.opts.Audiences))
	if err != nil {
		return Identity{}, c.apiError(ctx, "TokenReview", err)
	}
	if !tr.Status.Authenticated {
		// status.error says why (expired, unknown, wrong audience); the
		// API server never puts the token in it.
		return Identity{}, fmt.Errorf("%w: TokenReview did not authenticate the token: %q", ErrBadCredentials, tr.Status.Error)
	}
	if len(c.opts.Audiences) > 0 && !intersects(tr.Status.Audiences, c.opts.Audiences) {
		return Identity{}, fmt.Errorf("%w: cluster token of %q is bound to %q, none of the accepted audiences",
			ErrBadCredentials, tr.Status.User.Username, tr.Status.Audiences)
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

// authorize decides whether id may pull at all, at login and on Authorize:
// the Authorize hook when set, else the namespace review in Namespace, else
// nothing (no Namespace): what the user may pull is then reviewed per image
// stream (ReviewImageStream).
func (c *Cluster) authorize(ctx context.Context, cl *clusterClients, id Identity) error {
	switch {
	case c.opts.Authorize != nil:
		return c.opts.Authorize(ctx, id)
	case c.opts.Namespace == "":
		return nil
	}
	return c.accessReview(ctx, cl, id, c.opts.Namespace, "")
}

// accessReview asks whether id may get imagestreams/layers in namespace,
// on the image stream name ("": every image stream of the namespace).
func (c *Cluster) accessReview(ctx context.Context, cl *clusterClients, id Identity, namespace, name string) error {
	spec := authorizationv1.SubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace:   namespace,
			Verb:        reviewVerb,
			Group:       reviewGroup,
			Resource:    reviewResource,
			Subresource: reviewSubresource,
			Name:        name,
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
	c.opts.Metrics.ClusterReview(c.opts.Name, metrics.ReviewAccess, accessReviewResult(err, sar))
	if err != nil {
		return c.apiError(ctx, "SubjectAccessReview", err)
	}
	st := sar.Status
	switch {
	case st.Allowed && !st.Denied:
		return nil
	case !st.Denied && st.EvaluationError != "":
		// The authorizer could not decide: not a denial, not cached.
		c.opts.Logger.ErrorContext(ctx, "cluster could not evaluate the access review",
			"user", id.Name, "namespace", namespace, "image_stream", name, "evaluation_error", st.EvaluationError)
		return fmt.Errorf("%w: SubjectAccessReview evaluation error: %s", ErrUnavailable, st.EvaluationError)
	default:
		return &DeniedError{User: id.Name, Namespace: namespace, ImageStream: name, Reason: st.Reason}
	}
}

// apiError sorts a failed review call. A call cancelled because no caller
// waits any more is no outage. A 4xx that depends on what the user sent
// (400 for an empty token, 422, 413, ...) is a wrong credential, logged at
// WARN. The rest is ErrUnavailable, logged at ERROR with what an operator
// has to fix: transport errors, timeouts, 5xx, and the 4xx that say our own
// side is wrong or throttled: 401 (our credential), 403 (no
// system:auth-delegator), 404/405 (no review API there: not a Kubernetes
// API server), 408 and 429.
func (c *Cluster) apiError(ctx context.Context, call string, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		c.opts.Logger.DebugContext(ctx, "review cancelled: no caller waits for it", "call", call)
		return fmt.Errorf("%s cancelled: %w", call, err)
	}
	var status apierrors.APIStatus
	code := 0
	if errors.As(err, &status) {
		code = int(status.Status().Code)
	}
	switch {
	case code == http.StatusForbidden:
		c.opts.Logger.ErrorContext(ctx, "cluster refused the review: the service account lacks system:auth-delegator (TokenReview and SubjectAccessReview create)",
			"call", call, "error", err)
		return fmt.Errorf("%w: %s forbidden, the service account lacks system:auth-delegator: %w", ErrUnavailable, call, err)
	case code == http.StatusUnauthorized:
		c.opts.Logger.ErrorContext(ctx, "cluster refused qci-appci's own credentials (kubeconfig or service account token)",
			"call", call, "error", err)
		return fmt.Errorf("%w: %s unauthorized: %w", ErrUnavailable, call, err)
	case code >= 400 && code < 500 && !outage4xx(code) && call == "TokenReview":
		// Only a TokenReview carries what the user sent (the token); a
		// SubjectAccessReview is ours alone, so its 4xx is an outage.
		c.opts.Logger.WarnContext(ctx, "cluster rejected the review of what the user sent", "call", call, "code", code, "error", err)
		return fmt.Errorf("%w: %s answered %d: %w", ErrBadCredentials, call, code, err)
	}
	c.opts.Logger.ErrorContext(ctx, "cluster API unavailable", "call", call, "error", err)
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, call, err)
}

// outage4xx reports whether a 4xx answer to a review means the cluster
// side is wrong or throttled, whatever token the user sent.
func outage4xx(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusRequestTimeout, http.StatusTooManyRequests:
		return true
	}
	return false
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}
