package login

// MaxTokenBytes is the longest password taken for a cluster token. Service
// account tokens (JWTs) are about 1 KiB, OpenShift OAuth tokens
// ("sha256~" and 43 characters) far less; OIDC tokens with many groups stay
// within a few KiB.
const MaxTokenBytes = 8 << 10

// PlausibleToken reports whether s could be a cluster token at all: not
// empty, at most MaxTokenBytes, and only the bytes of an RFC 6750 bearer
// token (b64token: letters, digits, "-._~+/" and trailing "="), which
// covers JWTs (base64url and dots), OpenShift "sha256~" tokens and
// Kubernetes bootstrap and static tokens. Anything else is a wrong
// credential that no cluster is asked about.
func PlausibleToken(s string) bool {
	if s == "" || len(s) > MaxTokenBytes {
		return false
	}
	padding := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '=':
			padding = true
			continue
		case padding:
			return false // "=" only at the end
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return s[0] != '='
}
