package upstream

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		in   string
		want challenge
	}{
		{`Bearer realm="https://quay.io/v2/auth",service="quay.io"`, challenge{"bearer", map[string]string{"realm": "https://quay.io/v2/auth", "service": "quay.io"}}},
		{`bearer realm="a\"b", scope="repository:x:pull" , error=invalid_token`, challenge{"bearer", map[string]string{"realm": `a"b`, "scope": "repository:x:pull", "error": "invalid_token"}}},
		{`Basic`, challenge{scheme: "basic"}},
		{`Bearer realm="unterminated`, challenge{"bearer", map[string]string{"realm": "unterminated"}}},
		// BWS around "=" and HTAB between parameters are allowed.
		{"Bearer realm = \"r\",\tservice=s", challenge{"bearer", map[string]string{"realm": "r", "service": "s"}}},
		// A parameter name must be a token (1*tchar): parsing stops at one
		// that is not, keeping what came before.
		{"0 \v=", challenge{"0", map[string]string{}}},
		{"Bearer realm=r, \r=x, service=s", challenge{"bearer", map[string]string{"realm": "r"}}},
		{`Bearer realm=r, "quoted"=x`, challenge{"bearer", map[string]string{"realm": "r"}}},
		{`Bearer =x`, challenge{"bearer", map[string]string{}}},
		// A value must be a token or a quoted-string.
		{`Bearer realm=, service=s`, challenge{"bearer", map[string]string{}}},
		{`Bearer realm=a b, service=s`, challenge{"bearer", map[string]string{"realm": "a"}}},
		// token68 (Basic credentials' shape) holds no parameters.
		{`Newauth dG9rZW42OA==`, challenge{"newauth", map[string]string{}}},
		// A scheme that is not a token is no challenge.
		{`Bear"er realm=x`, challenge{}},
		{"Bearer\trealm=x", challenge{}},
		{``, challenge{}},
	}
	for _, tc := range tests {
		if got := parseChallenge(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChallenge(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// isToken reports whether s is an RFC 7230 token, written out apart from
// the parser's own tchar test.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

// FuzzParseChallenge: the scheme and every parameter name are lowercase
// tokens, whatever the input.
func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://quay.io/v2/auth",service="quay.io"`)
	f.Add(`Bearer realm=x,,=,"`)
	f.Add(`bearer realm="a\"b", scope="repository:x:pull" , error=invalid_token`)
	f.Fuzz(func(t *testing.T, s string) {
		c := parseChallenge(s)
		if c.scheme != "" && (!isToken(c.scheme) || c.scheme != strings.ToLower(c.scheme)) {
			t.Fatalf("scheme %q from %q is not a lowercase token", c.scheme, s)
		}
		if c.scheme == "" && c.params != nil {
			t.Fatalf("parameters without a scheme from %q", s)
		}
		for k, v := range c.params {
			if !isToken(k) || k != strings.ToLower(k) {
				t.Fatalf("parameter name %q from %q is not a lowercase token", k, s)
			}
			if !strings.Contains(s, v) && !strings.Contains(s, `\`) {
				t.Fatalf("value %q of %q is not in %q", v, k, s)
			}
		}
	})
}
