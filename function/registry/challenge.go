package registry

import (
	"net/http"
	"strings"
)

// Challenge error values of RFC 6750.
const (
	ChallengeInvalidToken      = "invalid_token"
	ChallengeInsufficientScope = "insufficient_scope"
)

// WriteChallenge answers 401 UNAUTHORIZED with a Bearer challenge naming
// realm and service, scope when not empty, and errValue when not empty.
func WriteChallenge(w http.ResponseWriter, realm, service, scope, errValue, message string) {
	var b strings.Builder
	b.Grow(64 + len(realm) + len(service) + len(scope))
	b.WriteString(`Bearer realm="`)
	b.WriteString(realm)
	b.WriteString(`",service="`)
	b.WriteString(service)
	b.WriteByte('"')
	if scope != "" {
		b.WriteString(`,scope="`)
		b.WriteString(scope)
		b.WriteByte('"')
	}
	if errValue != "" {
		b.WriteString(`,error="`)
		b.WriteString(errValue)
		b.WriteByte('"')
	}
	w.Header().Set("WWW-Authenticate", b.String())
	WriteError(w, http.StatusUnauthorized, CodeUnauthorized, message)
}
