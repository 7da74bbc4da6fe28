package auth

import (
	"context"
	"log/slog"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

// grant decides the requested scopes of a logged-in subject: the robot
// pulls every served repository it asks for; a user of a cluster of
// QCI_CLUSTERS_FILE, whom that cluster authorized at login, too (but the
// upstream repository only with QCI_FLAT_REPOSITORY); a user of the single
// cluster, or of a cluster of the file that reviews image streams, each one
// the policy allows, reviewed afresh on a refresh. Nothing asked is an empty
// grant (the login probe). Everything asked and nothing granted is an
// error: ErrDenied (a deniedError naming the repositories) when every
// decided scope was denied, ErrUnavailable when a review could not be
// made. A request that needs fresh reviews past the user's limit of them
// is a *policy.LimitedError (429), whatever else it asks.
func (h *Handler) grant(ctx context.Context, log *slog.Logger, req request, sub token.Subject) ([]registry.Scope, error) {
	requested := registry.ParseScopes(req.scopes)
	switch {
	case sub.Login == token.LoginRobot:
		return h.opts.Policy.Robot(requested), nil
	case !h.opts.Policy.PerImageStream(sub.Cluster):
		// A cluster of QCI_CLUSTERS_FILE authorized the user at login, for
		// the whole mirror as before image streams had repositories.
		return h.opts.Policy.Authorized(requested), nil
	}
	id := login.Identity{Name: sub.Name, UID: sub.UID, Groups: sub.Groups, Extra: sub.Extra, Cluster: sub.Cluster}
	d := h.opts.Policy.Decide(ctx, id, requested, req.grant == "refresh_token")
	switch {
	case d.Limited != nil:
		if d.Limited.Newly {
			// Once per identity until its bucket refills, not per request;
			// the line names the cluster and the user, never a token.
			log.WarnContext(ctx, "image-stream review limit reached: this user's token requests that need a fresh review are refused with 429 until it refills",
				"retry_after", d.Limited.RetryAfter.String())
		}
		return nil, d.Limited
	case !d.Refused():
		if d.Err != nil {
			log.WarnContext(ctx, "some scopes could not be reviewed and are not granted", "error", d.Err)
		}
		if len(d.Denied) > 0 {
			log.InfoContext(ctx, "some scopes denied", "denied", d.Denied)
		}
		return d.Granted, nil
	case d.Err != nil:
		return nil, d.Err
	default:
		return nil, &deniedError{msg: h.opts.Policy.DeniedMessage(sub.Name, d)}
	}
}

// deniedError is a login whose every requested scope was denied; it
// matches login.ErrDenied and says which repositories and why.
type deniedError struct{ msg string }

func (e *deniedError) Error() string        { return e.msg }
func (e *deniedError) Is(target error) bool { return target == login.ErrDenied }
