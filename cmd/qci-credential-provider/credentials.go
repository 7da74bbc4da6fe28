package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
)

// Username is the user name of every answer. qci-appci takes any user name
// but its robot's with a cluster token as the password; the token's
// TokenReview, not this name, says who pulls.
const Username = "serviceaccount"

// errNoToken is the answer to a request without a service account token:
// the kubelet was not configured with tokenAttributes, or the pod has no
// service account.
var errNoToken = errors.New("the CredentialProviderRequest holds no serviceAccountToken: " +
	"set tokenAttributes.serviceAccountTokenAudience (and requireServiceAccount: true) for this provider in the kubelet's CredentialProviderConfig")

// provider answers credential requests for one registry host with the pod's
// own service account token. It does no I/O.
type provider struct {
	// registry is the host (and port) of qci-appci, the key of the answer.
	registry string
	// now is the clock.
	now func() time.Time
}

// credentials answers req: the pod's token as the password for the
// registry, cached by the kubelet per registry for half of the token's
// remaining lifetime (not at all when that is unknown or over).
func (p provider) credentials(req *credentialproviderv1.CredentialProviderRequest) (*credentialproviderv1.CredentialProviderResponse, error) {
	if req.ServiceAccountToken == "" {
		return nil, errNoToken
	}
	return &credentialproviderv1.CredentialProviderResponse{
		TypeMeta:      metav1.TypeMeta{APIVersion: credentialproviderv1.SchemeGroupVersion.String(), Kind: "CredentialProviderResponse"},
		CacheKeyType:  credentialproviderv1.RegistryPluginCacheKeyType,
		CacheDuration: &metav1.Duration{Duration: cacheDuration(req.ServiceAccountToken, p.now())},
		Auth: map[string]credentialproviderv1.AuthConfig{
			p.registry: {Username: Username, Password: req.ServiceAccountToken},
		},
	}, nil
}

// cacheDuration is half of the time token has left by its (unverified) exp
// claim, in whole seconds; 0, which tells the kubelet not to cache, when the
// token is no JWT, has no exp, or has expired. Only the lifetime is read:
// qci-appci's TokenReview verifies the token.
func cacheDuration(token string, now time.Time) time.Duration {
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil || claims.ExpiresAt == nil {
		return 0
	}
	left := claims.ExpiresAt.Sub(now)
	if left <= 0 {
		return 0
	}
	return (left / 2).Truncate(time.Second)
}

// checkRegistry refuses a registry flag that cannot be a key of the answer.
func checkRegistry(registry string) error {
	switch {
	case registry == "":
		return errors.New("-registry is required: the host of qci-appci, as in the images pulled (registry.ci.example.com)")
	case len(registry) > 253:
		return errors.New("-registry is longer than a host name can be")
	}
	for _, r := range registry {
		ok := r == '.' || r == '-' || r == ':' || r == '[' || r == ']' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return fmt.Errorf("-registry %q must be a host with an optional port, no scheme or path", registry)
		}
	}
	return nil
}
