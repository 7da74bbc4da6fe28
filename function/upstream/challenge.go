package upstream

import (
	"strings"
)

// challenge is a parsed "Bearer realm=…,service=…,scope=…" header.
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenge parses one WWW-Authenticate value by RFC 7235's grammar:
//
//	challenge  = auth-scheme [ 1*SP #auth-param ]
//	auth-param = token BWS "=" BWS ( token / quoted-string )
//	token      = 1*tchar
//
// Scheme and parameter names are lowercased. A value whose scheme is not a
// token gives an empty scheme; parsing stops at the first parameter that
// does not follow the grammar (a token68, a name that is not a token, a
// missing value) and keeps the parameters before it. The one leniency: a
// quoted-string that never closes runs to the end of the value.
func parseChallenge(h string) challenge {
	h = strings.Trim(h, " \t")
	n := tokenLen(h)
	if n == 0 {
		return challenge{}
	}
	if n == len(h) {
		return challenge{scheme: strings.ToLower(h)}
	}
	if h[n] != ' ' {
		return challenge{}
	}
	c := challenge{scheme: strings.ToLower(h[:n]), params: map[string]string{}}
	rest := h[n:]
	for {
		rest = strings.TrimLeft(rest, " \t,")
		n := tokenLen(rest)
		if n == 0 {
			return c
		}
		key := strings.ToLower(rest[:n])
		rest = strings.TrimLeft(rest[n:], " \t")
		if !strings.HasPrefix(rest, "=") {
			return c
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var val string
		if strings.HasPrefix(rest, `"`) {
			val, rest = quotedString(rest)
		} else {
			n := tokenLen(rest)
			if n == 0 {
				return c
			}
			val, rest = rest[:n], rest[n:]
		}
		c.params[key] = val
		rest = strings.TrimLeft(rest, " \t")
		if rest != "" && rest[0] != ',' {
			return c
		}
	}
}

// quotedString unquotes the quoted-string at the start of s (which begins
// with '"') and returns it and what follows it.
func quotedString(s string) (string, string) {
	var b strings.Builder
	i := 1
	for ; i < len(s); i++ {
		ch := s[i]
		if ch == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(s[i])
			continue
		}
		if ch == '"' {
			return b.String(), s[i+1:]
		}
		b.WriteByte(ch)
	}
	return b.String(), ""
}

// tokenLen is the length of the RFC 7230 token at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		if !IsTokenChar(s[i]) {
			return i
		}
	}
	return len(s)
}

// IsTokenChar reports whether c is an RFC 9110 tchar, a byte of a header
// token.
func IsTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
