package login

import (
	"context"
	"crypto/sha256"
	"fmt"
)

// Authenticate reviews token with a TokenReview only: who it belongs to,
// ErrBadCredentials when the cluster does not authenticate it,
// ErrUnavailable (wrapped) when the cluster cannot say. What the user may
// pull is decided per scope afterwards (ReviewImageStream). Answers are
// cached under a hash of the token, as Login's are; concurrent callers with
// one token share a review.
func (c *Cluster) Authenticate(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte("authenticate\x00" + token))
	e, ok := c.cached(key)
	c.opts.Metrics.ReviewCache(ok)
	if ok {
		return e.id, e.err
	}
	ch := c.flight.DoChan(string(key[:]), func() (any, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		cl, err := c.client()
		var id Identity
		if err == nil {
			id, err = c.tokenReview(rctx, cl, token)
		}
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

// ReviewImageStream runs one SubjectAccessReview, not cached here: may id
// get imagestreams/layers (group image.openshift.io) on the image stream
// name in namespace, or on every image stream of it when name is empty.
// nil when allowed, ErrDenied when not, ErrUnavailable (wrapped) when the
// cluster cannot say.
func (c *Cluster) ReviewImageStream(ctx context.Context, id Identity, namespace, name string) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	return c.accessReview(ctx, cl, id, namespace, name)
}
