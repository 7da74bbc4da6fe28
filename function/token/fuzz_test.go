package token_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/token"
)

// fuzzLongest is the longest lifetime of the keys under fuzzing.
const fuzzLongest = 24 * time.Hour

// FuzzVerifyClaims signs arbitrary header and payload JSON, with our key or
// another, and checks Verify against the rules written out here apart from
// it: it never panics, never accepts what our key did not sign, and
// whatever it accepts satisfies every rule of DESIGN.md's "Our JWT" and of
// issue 15 (HS256, known kid, no crit, iss and aud, integer dates, exp
// required, current and no further away than our longest lifetime, kind).
func FuzzVerifyClaims(f *testing.F) {
	kid := token.KeyID(keyA)
	n := now.Unix()
	header := `{"alg":"HS256","kid":"` + kid + `","typ":"JWT"}`
	claims := func(dates string) string {
		return `{"iss":"` + host + `","aud":"` + host + `","sub":"mallory","jti":"x","qci_kind":"access",` +
			`"access":[{"type":"repository","name":"openshift/ci","actions":["pull"]}],` + dates + `}`
	}
	i := strconv.FormatInt
	f.Add(header, claims(`"iat":`+i(n, 10)+`,"nbf":`+i(n, 10)+`,"exp":`+i(n+3600, 10)), true, false)
	f.Add(header, claims(`"exp":`+i(n+3600, 10)), true, true)
	f.Add(header, claims(`"exp":`+i(n+3600, 10)+`.5`), true, false)
	f.Add(header, claims(`"exp":"`+i(n+3600, 10)+`"`), true, false)
	f.Add(header, claims(`"exp":`+i(n+90000, 10)), true, false)
	f.Add(`{"alg":"HS256","kid":"`+kid+`","crit":["exp"]}`, claims(`"exp":`+i(n+3600, 10)), true, false)
	f.Add(`{"alg":"none","kid":"`+kid+`"}`, claims(`"exp":`+i(n+3600, 10)), false, false)
	f.Add(header, `{"iss":"`+host+`","aud":["`+host+`"],"EXP":`+i(n+3600, 10)+`,"qci_kind":"refresh"}`, true, true)
	k, err := token.NewKeys([][]byte{keyA}, fuzzLongest)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header, payload string, ours, refresh bool) {
		key := keyA
		if !ours {
			key = keyB
		}
		raw := signRaw(header, payload, key)
		kind := token.KindAccess
		if refresh {
			kind = token.KindRefresh
		}
		c, err := k.Verify(raw, host, kind, now)
		if err != nil {
			return
		}
		if !ours {
			t.Fatalf("accepted a token signed by another key: %s", raw)
		}
		checkRules(t, header, payload, kind, c)
	})
}

// FuzzVerifyRaw gives Verify arbitrary strings (seeded with real tokens,
// which the fuzzer then bends): whatever it accepts is three canonical
// base64url segments whose signature is our key's HMAC of the first two,
// and satisfies every rule.
func FuzzVerifyRaw(f *testing.F) {
	iss := &token.Issuer{AccessTTL: time.Hour, RefreshTTL: fuzzLongest}
	var err error
	if iss.Keys, err = token.NewKeys([][]byte{keyA}, fuzzLongest); err != nil {
		f.Fatal(err)
	}
	access, _ := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	refresh, _ := iss.Refresh(host, token.Subject{Name: "alice", Login: token.LoginRobot}, now)
	f.Add(access.Raw, false)
	f.Add(refresh.Raw, true)
	f.Add(straySignatureBits(access.Raw), false)
	f.Add("a.b.c", false)
	f.Fuzz(func(t *testing.T, raw string, refresh bool) {
		kind := token.KindAccess
		if refresh {
			kind = token.KindRefresh
		}
		c, err := iss.Keys.Verify(raw, host, kind, now)
		if err != nil {
			return
		}
		parts := strings.Split(raw, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted %d segments: %q", len(parts), raw)
		}
		var seg [3][]byte
		for i, p := range parts {
			b, err := base64.RawURLEncoding.Strict().DecodeString(p)
			if err != nil || base64.RawURLEncoding.EncodeToString(b) != p {
				t.Fatalf("accepted a non-canonical segment %d: %q", i, raw)
			}
			seg[i] = b
		}
		mac := hmac.New(sha256.New, keyA)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if !hmac.Equal(mac.Sum(nil), seg[2]) {
			t.Fatalf("accepted a signature that is not our key's: %q", raw)
		}
		checkRules(t, string(seg[0]), string(seg[1]), kind, c)
	})
}

// checkRules fails t unless an accepted token's header and payload, and
// the claims Verify returned for them, follow every rule.
func checkRules(t *testing.T, header, payload string, kind token.Kind, c *token.Claims) {
	t.Helper()
	var h map[string]any
	if err := json.Unmarshal([]byte(header), &h); err != nil {
		t.Fatalf("accepted a header that is not a JSON object: %q", header)
	}
	if h["alg"] != "HS256" {
		t.Fatalf("accepted alg %v", h["alg"])
	}
	if h["kid"] != token.KeyID(keyA) {
		t.Fatalf("accepted kid %v", h["kid"])
	}
	if _, ok := h["crit"]; ok {
		t.Fatalf("accepted a crit header: %q", header)
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal([]byte(payload), &p); err != nil {
		t.Fatalf("accepted a payload that is not a JSON object: %q", payload)
	}
	// encoding/json matches names regardless of case: so do these rules.
	for name, v := range p {
		for _, date := range []string{"exp", "nbf", "iat"} {
			if strings.EqualFold(name, date) && !isInteger(v) {
				t.Fatalf("accepted %s %s, not an integer NumericDate", name, v)
			}
		}
	}
	if c.Issuer != host || c.Audience != host {
		t.Fatalf("accepted iss %q aud %q", c.Issuer, c.Audience)
	}
	if c.Kind != kind {
		t.Fatalf("accepted kind %q as %q", c.Kind, kind)
	}
	if c.ExpiresAt == nil {
		t.Fatalf("accepted a token without exp: %q", payload)
	}
	exp := c.ExpiresAt.Time
	if !now.Before(exp.Add(token.Leeway)) {
		t.Fatalf("accepted an expired token: exp %v", exp)
	}
	if exp.After(now.Add(fuzzLongest + token.Leeway)) {
		t.Fatalf("accepted exp %v, beyond our longest lifetime", exp)
	}
	if c.NotBefore != nil && now.Before(c.NotBefore.Add(-token.Leeway)) {
		t.Fatalf("accepted a token not yet valid: nbf %v", c.NotBefore)
	}
	if c.IssuedAt != nil && now.Before(c.IssuedAt.Add(-token.Leeway)) {
		t.Fatalf("accepted a token issued in the future: iat %v", c.IssuedAt)
	}
}

// isInteger reports whether v is a JSON number of digits only.
func isInteger(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false
	}
	for _, b := range v {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}
