package auth

import (
	"context"
	"errors"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/policy"
)

// loginResult is the result label of a login that authenticate answered
// with err, in loginFailed's order: rate limited 429, abandoned by the
// client, denied 403, busy or unavailable 503, any other failure 401.
func loginResult(ctx context.Context, err error) string {
	var limited *limitedError
	var reviewLimited *policy.LimitedError
	switch {
	case err == nil:
		return metrics.LoginOK
	case errors.As(err, &limited), errors.As(err, &reviewLimited):
		return metrics.LoginRateLimited
	case ctx.Err() != nil:
		return metrics.LoginUnavailable
	case errors.Is(err, login.ErrBusy):
		return metrics.LoginUnavailable
	case errors.Is(err, login.ErrDenied):
		return metrics.LoginDenied
	case errors.Is(err, login.ErrUnavailable):
		return metrics.LoginUnavailable
	default:
		return metrics.LoginBadCredentials
	}
}
