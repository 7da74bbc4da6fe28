// Package registry holds what qci-appci knows of the OCI distribution API:
// the routes it serves, scopes, the registry error shape, and how the
// image-stream repositories <ns>/<name> map onto the one upstream
// repository.
package registry

import (
	"net/http"
	"strconv"
)

// Error codes of the distribution spec used here.
const (
	CodeUnauthorized      = "UNAUTHORIZED"
	CodeDenied            = "DENIED"
	CodeUnsupported       = "UNSUPPORTED"
	CodeNameInvalid       = "NAME_INVALID"
	CodeNameUnknown       = "NAME_UNKNOWN"
	CodeDigestInvalid     = "DIGEST_INVALID"
	CodeManifestInvalid   = "MANIFEST_INVALID"
	CodeManifestUnknown   = "MANIFEST_UNKNOWN"
	CodePaginationInvalid = "PAGINATION_NUMBER_INVALID"
	CodeUnavailable       = "UNAVAILABLE"
	CodeTooManyRequests   = "TOOMANYREQUESTS"
)

// APIVersionHeader is set on every answer, as registries do.
const APIVersionHeader = "Docker-Distribution-API-Version"

// APIVersion is the value of APIVersionHeader.
const APIVersion = "registry/2.0"

// RetryAfterSeconds is what a 503 asks clients to wait.
const RetryAfterSeconds = 5

var (
	apiVersionKey   = http.CanonicalHeaderKey(APIVersionHeader)
	apiVersionValue = []string{APIVersion}
)

// SetAPIVersion sets the Docker-Distribution-API-Version header.
func SetAPIVersion(h http.Header) { h[apiVersionKey] = apiVersionValue }

// WriteError writes the registry JSON error shape
// {"errors":[{"code":…,"message":…}]} with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	SetAPIVersion(h)
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		h.Set("Retry-After", strconv.Itoa(RetryAfterSeconds))
	}
	body := make([]byte, 0, 64+len(code)+len(message))
	body = append(body, `{"errors":[{"code":`...)
	body = strconv.AppendQuote(body, code)
	body = append(body, `,"message":`...)
	body = appendJSONString(body, message)
	body = append(body, "}]}\n"...)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// appendJSONString appends s as a JSON string. strconv.Quote is not JSON
// (it writes \x escapes), so escape by hand.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == '<' || r == '>' || r == '&' || r == 0x2028 || r == 0x2029:
			b = append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
		default:
			b = append(b, string(r)...)
		}
	}
	return append(b, '"')
}
