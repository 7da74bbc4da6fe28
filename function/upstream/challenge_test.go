package upstream

import (
	"reflect"
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
	}
	for _, tc := range tests {
		if got := parseChallenge(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseChallenge(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(`Bearer realm="https://quay.io/v2/auth",service="quay.io"`)
	f.Add(`Bearer realm=x,,=,"`)
	f.Fuzz(func(t *testing.T, s string) {
		c := parseChallenge(s)
		for k := range c.params {
			if k == "" {
				t.Fatalf("empty key from %q", s)
			}
		}
	})
}
