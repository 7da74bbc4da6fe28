package auth

import (
	"errors"

	"github.com/qci-appci/qci-appci/function/login"
	"github.com/qci-appci/qci-appci/function/metrics"
)

// loginResult is the result label of a login that authenticate answered
// with err, as loginFailed answers it: denied 403, unavailable 503, any
// other failure 401.
func loginResult(err error) string {
	switch {
	case err == nil:
		return metrics.LoginOK
	case errors.Is(err, login.ErrDenied):
		return metrics.LoginDenied
	case errors.Is(err, login.ErrUnavailable):
		return metrics.LoginUnavailable
	default:
		return metrics.LoginBadCredentials
	}
}
