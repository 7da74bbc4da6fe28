package upstream

import (
	"strings"
)

// challenge is a parsed "Bearer realm=…,service=…,scope=…" header.
type challenge struct {
	scheme string
	params map[string]string
}

// parseChallenge parses one WWW-Authenticate value (RFC 7235 auth-params,
// quoted or token values). It is lenient: unknown shapes give an empty
// scheme.
func parseChallenge(h string) challenge {
	h = strings.TrimSpace(h)
	sp := strings.IndexByte(h, ' ')
	if sp < 0 {
		return challenge{scheme: strings.ToLower(h)}
	}
	c := challenge{scheme: strings.ToLower(h[:sp]), params: map[string]string{}}
	rest := h[sp+1:]
	for {
		rest = strings.TrimLeft(rest, " ,")
		eq := strings.IndexByte(rest, '=')
		if eq <= 0 {
			return c
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " ")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(rest); i++ {
				ch := rest[i]
				if ch == '\\' && i+1 < len(rest) {
					i++
					b.WriteByte(rest[i])
					continue
				}
				if ch == '"' {
					break
				}
				b.WriteByte(ch)
			}
			val = b.String()
			if i < len(rest) {
				i++
			}
			rest = rest[i:]
		} else {
			end := strings.IndexByte(rest, ',')
			if end < 0 {
				end = len(rest)
			}
			val = strings.TrimSpace(rest[:end])
			rest = rest[end:]
		}
		c.params[key] = val
	}
}
