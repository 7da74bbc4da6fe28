package login

import (
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/qci-appci/qci-appci/function/metrics"
)

// tokenReviewResult is the result label of a TokenReview that answered tr
// or failed with err, as review decides on it.
func tokenReviewResult(err error, tr *authenticationv1.TokenReview, audiences []string) string {
	switch {
	case err != nil:
		return metrics.ReviewError
	case !tr.Status.Authenticated, len(audiences) > 0 && !intersects(tr.Status.Audiences, audiences):
		return metrics.ReviewDenied
	default:
		return metrics.ReviewAllowed
	}
}

// accessReviewResult is the result label of a SubjectAccessReview that
// answered sar or failed with err, as authorize decides on it.
func accessReviewResult(err error, sar *authorizationv1.SubjectAccessReview) string {
	switch {
	case err != nil:
		return metrics.ReviewError
	case !sar.Status.Allowed || sar.Status.Denied:
		return metrics.ReviewDenied
	default:
		return metrics.ReviewAllowed
	}
}
