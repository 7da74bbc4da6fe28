package token_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

const host = "registry.example.com:8443"

var (
	keyA = []byte("0123456789abcdef0123456789abcdef-key-a")
	keyB = []byte("0123456789abcdef0123456789abcdef-key-b")
	now  = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
)

func issuer(t *testing.T, keys ...[]byte) *token.Issuer {
	t.Helper()
	k, err := token.NewKeys(keys, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &token.Issuer{Keys: k, AccessTTL: time.Hour, RefreshTTL: 24 * time.Hour}
}

func pull() []registry.Scope { return []registry.Scope{registry.PullScope("openshift/ci")} }

func TestAccessTokenRoundTrip(t *testing.T) {
	iss := issuer(t, keyA)
	tok, err := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Keys.Verify(tok.Raw, host, token.KindAccess, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.Subject != "alice" || c.Issuer != host || c.Audience != host || c.ID == "" {
		t.Errorf("claims = %+v", c)
	}
	if !registry.Allows(c.Access, "openshift/ci", "pull") {
		t.Errorf("access %+v does not grant pull", c.Access)
	}
	// The wire form: a string aud, the kid header, our kind claim.
	hdr, payload := decodeParts(t, tok.Raw)
	if hdr["alg"] != "HS256" || hdr["kid"] != token.KeyID(keyA) {
		t.Errorf("header = %v", hdr)
	}
	if payload["aud"] != host || payload["qci_kind"] != "access" {
		t.Errorf("payload = %v", payload)
	}
	if exp := payload["exp"].(float64) - payload["iat"].(float64); exp != 3600 {
		t.Errorf("exp-iat = %v, want 3600", exp)
	}
}

func TestVerifyRejects(t *testing.T) {
	iss := issuer(t, keyA)
	good, err := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	if err != nil {
		t.Fatal(err)
	}
	refresh, err := iss.Refresh(host, token.Subject{Name: "alice", Login: token.LoginRobot}, now)
	if err != nil {
		t.Fatal(err)
	}
	other := issuer(t, keyB)
	wrongKey, _ := other.Access(host, token.Subject{Name: "alice"}, pull(), now)
	otherHost, _ := iss.Access("other.example.com", token.Subject{Name: "alice"}, pull(), now)

	claims := validClaims()
	tests := []struct {
		name string
		raw  string
		at   time.Time
		kind token.Kind
	}{
		{"garbage", "not.a.token", now, token.KindAccess},
		{"empty", "", now, token.KindAccess},
		{"unsigned alg none", signNone(t, claims), now, token.KindAccess},
		{"RS256 with a key of its own", signRS256(t, claims), now, token.KindAccess},
		{"HS/RS confusion: HS256 keyed with nothing known", signHS(t, jwt.SigningMethodHS256, claims, []byte("some-other-secret-of-32-bytes!!!"), token.KeyID(keyA)), now, token.KindAccess},
		{"HS512 with the right key", signHS(t, jwt.SigningMethodHS512, claims, keyA, token.KeyID(keyA)), now, token.KindAccess},
		{"right key, no kid", signHS(t, jwt.SigningMethodHS256, claims, keyA, ""), now, token.KindAccess},
		{"right key, unknown kid", signHS(t, jwt.SigningMethodHS256, claims, keyA, "0011223344556677"), now, token.KindAccess},
		{"wrong key", wrongKey.Raw, now, token.KindAccess},
		{"expired", good.Raw, now.Add(time.Hour + token.Leeway + time.Second), token.KindAccess},
		{"not yet valid", good.Raw, now.Add(-token.Leeway - time.Minute), token.KindAccess},
		{"other audience and issuer", otherHost.Raw, now, token.KindAccess},
		{"refresh used as access", refresh.Raw, now, token.KindAccess},
		{"access used as refresh", good.Raw, now, token.KindRefresh},
		{"no exp", signHS(t, jwt.SigningMethodHS256, without(claims, "exp"), keyA, token.KeyID(keyA)), now, token.KindAccess},
		{"wrong aud only", signHS(t, jwt.SigningMethodHS256, with(claims, "aud", "evil"), keyA, token.KeyID(keyA)), now, token.KindAccess},
		{"wrong iss only", signHS(t, jwt.SigningMethodHS256, with(claims, "iss", "evil"), keyA, token.KeyID(keyA)), now, token.KindAccess},
		{"no kind", signHS(t, jwt.SigningMethodHS256, without(claims, "qci_kind"), keyA, token.KeyID(keyA)), now, token.KindAccess},
		{"tampered payload", tamper(good.Raw), now, token.KindAccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := iss.Keys.Verify(tc.raw, host, tc.kind, tc.at)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			if !errors.Is(err, token.ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
	// The hand-made valid claims pass, so each rejection above is the change it names.
	if _, err := iss.Keys.Verify(signHS(t, jwt.SigningMethodHS256, claims, keyA, token.KeyID(keyA)), host, token.KindAccess, now); err != nil {
		t.Fatalf("control token rejected: %v", err)
	}
	if _, err := iss.Keys.Verify(good.Raw, host, token.KindAccess, now.Add(time.Hour+token.Leeway/2)); err != nil {
		t.Errorf("token within leeway rejected: %v", err)
	}
}

// TestVerifyStrict: what golang-jwt accepts by default but our issuer never
// writes is refused, each case with the reason it names.
func TestVerifyStrict(t *testing.T) {
	iss := issuer(t, keyA) // longest lifetime: 24h
	kid := token.KeyID(keyA)
	header := `{"alg":"HS256","kid":"` + kid + `","typ":"JWT"}`
	payload := func(dates string) string {
		return `{"iss":"` + host + `","aud":"` + host + `","sub":"mallory","jti":"x","qci_kind":"access",` +
			`"access":[{"type":"repository","name":"openshift/ci","actions":["pull"]}],` + dates + `}`
	}
	n := now.Unix()
	dates := func(iat, nbf, exp string) string { return `"iat":` + iat + `,"nbf":` + nbf + `,"exp":` + exp }
	itoa := func(v int64) string { return strconv.FormatInt(v, 10) }
	ok := dates(itoa(n), itoa(n), itoa(n+3600))
	good := signRaw(header, payload(ok), keyA)

	tests := []struct {
		name string
		raw  string
		why  error
	}{
		{"crit header", signRaw(`{"alg":"HS256","kid":"`+kid+`","crit":["exp"]}`, payload(ok), keyA), token.ErrCritical},
		{"empty crit header", signRaw(`{"alg":"HS256","kid":"`+kid+`","crit":[]}`, payload(ok), keyA), token.ErrCritical},
		{"exp with a fraction", signRaw(header, payload(dates(itoa(n), itoa(n), itoa(n+3600)+".5")), keyA), token.ErrDate},
		{"exp with an exponent", signRaw(header, payload(dates(itoa(n), itoa(n), "1.7950036e9")), keyA), token.ErrDate},
		{"exp in a string", signRaw(header, payload(dates(itoa(n), itoa(n), `"`+itoa(n+3600)+`"`)), keyA), token.ErrDate},
		{"exp null", signRaw(header, payload(dates(itoa(n), itoa(n), "null")), keyA), token.ErrDate},
		{"exp negative", signRaw(header, payload(dates(itoa(n), itoa(n), "-1")), keyA), token.ErrDate},
		{"nbf with a fraction", signRaw(header, payload(dates(itoa(n), itoa(n)+".0", itoa(n+3600))), keyA), token.ErrDate},
		{"iat in a string", signRaw(header, payload(dates(`"`+itoa(n)+`"`, itoa(n), itoa(n+3600))), keyA), token.ErrDate},
		{"exp past the longest lifetime", signRaw(header, payload(dates(itoa(n), itoa(n), itoa(n+24*3600+int64(token.Leeway/time.Second)+1))), keyA), token.ErrTooLong},
		{"exp far in the future", signRaw(header, payload(dates(itoa(n), itoa(n), "99999999999")), keyA), token.ErrTooLong},
		{"non-canonical signature", straySignatureBits(good), nil},
		{"non-canonical payload", signRaw(header, payload(ok)+" ", keyA, strayBits), nil},
		{"padded signature", good + "=", nil},
		// Go's base64 decoders skip \r and \n, strict or not: the same
		// bytes, another token string.
		{"CR in the signature", good[:len(good)-5] + "\r" + good[len(good)-5:], token.ErrNotBase64URL},
		{"LF in the payload", strings.Replace(good, ".", ".\n", 1), token.ErrNotBase64URL},
		{"CRLF in the header", "\r\n" + good, token.ErrNotBase64URL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := iss.Keys.Verify(tc.raw, host, token.KindAccess, now)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", c)
			}
			if !errors.Is(err, token.ErrInvalid) || tc.why != nil && !errors.Is(err, tc.why) {
				t.Errorf("error %v is not %v", err, tc.why)
			}
		})
	}
	// Controls: the same shapes written canonically pass, so each case
	// above fails for the one change it names.
	for name, raw := range map[string]string{
		"canonical":                   good,
		"exp at the longest lifetime": signRaw(header, payload(dates(itoa(n), itoa(n), itoa(n+24*3600))), keyA),
		"no nbf nor iat":              signRaw(header, payload(`"exp":`+itoa(n+3600)), keyA),
		"payload of the same bytes":   signRaw(header, payload(ok)+" ", keyA),
	} {
		if _, err := iss.Keys.Verify(raw, host, token.KindAccess, now); err != nil {
			t.Errorf("control %q rejected: %v", name, err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	old := issuer(t, keyA)
	tok, err := old.Access(host, token.Subject{Name: "alice"}, pull(), now)
	if err != nil {
		t.Fatal(err)
	}
	rotated := issuer(t, keyB, keyA) // new key signs, old still verifies
	if _, err := rotated.Keys.Verify(tok.Raw, host, token.KindAccess, now); err != nil {
		t.Fatalf("token of the old key rejected after rotation: %v", err)
	}
	fresh, _ := rotated.Access(host, token.Subject{Name: "bob"}, pull(), now)
	if hdr, _ := decodeParts(t, fresh.Raw); hdr["kid"] != token.KeyID(keyB) {
		t.Errorf("new tokens signed by kid %v, want the first key's %v", hdr["kid"], token.KeyID(keyB))
	}
	dropped := issuer(t, keyB)
	if _, err := dropped.Keys.Verify(tok.Raw, host, token.KindAccess, now); err == nil {
		t.Error("token of a dropped key still accepted")
	}
}

func TestRefreshCarriesIdentity(t *testing.T) {
	iss := issuer(t, keyA)
	sub := token.Subject{Name: "system:serviceaccount:ci:puller", Login: token.LoginCluster, UID: "u-1",
		Groups: []string{"system:serviceaccounts"}, Extra: map[string][]string{"scopes.authorization.openshift.io": {"user:full"}}}
	tok, err := iss.Refresh(host, sub, now)
	if err != nil {
		t.Fatal(err)
	}
	c, err := iss.Keys.Verify(tok.Raw, host, token.KindRefresh, now.Add(23*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got := token.SubjectOf(c)
	if got.Name != sub.Name || got.Login != sub.Login || got.UID != sub.UID || got.Groups[0] != sub.Groups[0] ||
		got.Extra["scopes.authorization.openshift.io"][0] != "user:full" {
		t.Errorf("subject = %+v, want %+v", got, sub)
	}
	if len(c.Access) != 0 {
		t.Errorf("refresh token grants access %v", c.Access)
	}
}

func TestNewKeysRejectsShortKeys(t *testing.T) {
	if _, err := token.NewKeys([][]byte{[]byte("short")}, time.Hour); err == nil {
		t.Error("a 5-byte key was accepted")
	}
	if _, err := token.NewKeys([][]byte{keyA}, 0); err == nil {
		t.Error("no longest lifetime accepted")
	}
	if _, err := token.NewKeys(nil, time.Hour); err == nil {
		t.Error("no keys accepted")
	}
}

func validClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"iss": host, "aud": host, "sub": "mallory",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "x",
		"access":   []any{map[string]any{"type": "repository", "name": "openshift/ci", "actions": []string{"pull"}}},
		"qci_kind": "access",
	}
}

func with(c jwt.MapClaims, k string, v any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for kk, vv := range c {
		out[kk] = vv
	}
	out[k] = v
	return out
}

func without(c jwt.MapClaims, k string) jwt.MapClaims {
	out := with(c, k, nil)
	delete(out, k)
	return out
}

func signHS(t *testing.T, m jwt.SigningMethod, c jwt.MapClaims, key []byte, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signNone(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, c)
	tok.Header["kid"] = token.KeyID(keyA)
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signRS256(t *testing.T, c jwt.MapClaims) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	tok.Header["kid"] = token.KeyID(keyA)
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signRaw signs header and payload, exactly as given, with key (HS256);
// each edit is applied to the encoded header and payload first.
func signRaw(header, payload string, key []byte, edits ...func(string) string) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(header))
	p := base64.RawURLEncoding.EncodeToString([]byte(payload))
	for _, e := range edits {
		p = e(p)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(h + "." + p))
	return h + "." + p + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// strayBits sets the unused low bits of the last character of seg, which
// must carry some (its length is not a multiple of 4): lenient decoders
// read the same bytes, strict ones refuse it.
func strayBits(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	unused := map[int]int{2: 0xf, 3: 0x3}[len(seg)%4]
	if unused == 0 {
		panic("segment has no unused bits")
	}
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last|unused])
}

// straySignatureBits is raw with stray bits in its signature's encoding.
func straySignatureBits(raw string) string {
	i := strings.LastIndexByte(raw, '.')
	return raw[:i+1] + strayBits(raw[i+1:])
}

func tamper(raw string) string {
	parts := strings.Split(raw, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = []byte(strings.Replace(string(payload), `"sub":"alice"`, `"sub":"admin"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(payload)
	return strings.Join(parts, ".")
}

func decodeParts(t *testing.T, raw string) (hdr, payload map[string]any) {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("%d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&hdr, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return hdr, payload
}

func BenchmarkVerify(b *testing.B) {
	k, _ := token.NewKeys([][]byte{keyA}, time.Hour)
	iss := &token.Issuer{Keys: k, AccessTTL: time.Hour}
	tok, _ := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Verify(tok.Raw, host, token.KindAccess, now); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	k, _ := token.NewKeys([][]byte{keyA}, time.Hour)
	iss := &token.Issuer{Keys: k, AccessTTL: time.Hour}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := iss.Access(host, token.Subject{Name: "alice"}, pull(), now); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifiedCache(t *testing.T) {
	iss := issuer(t, keyA)
	tok, err := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	if err != nil {
		t.Fatal(err)
	}
	c := token.NewVerifiedCache(iss.Keys)
	for range 2 { // miss, then hit
		if got, err := c.VerifyAccess(tok.Raw, host, now); err != nil || got.Subject != "alice" {
			t.Fatalf("%v %v", got, err)
		}
	}
	if _, err := c.VerifyAccess(tok.Raw, "other.example.com", now); err == nil {
		t.Error("a cached token was accepted for another host")
	}
	if _, err := c.VerifyAccess(tok.Raw, host, now.Add(time.Hour+token.Leeway+time.Second)); err == nil {
		t.Error("a cached token was accepted after it expired")
	}
	if _, err := c.VerifyAccess(tok.Raw+"x", host, now); err == nil {
		t.Error("a tampered token was accepted")
	}
	refresh, _ := iss.Refresh(host, token.Subject{Name: "alice", Login: token.LoginRobot}, now)
	if _, err := c.VerifyAccess(refresh.Raw, host, now); err == nil {
		t.Error("a refresh token was accepted as access")
	}
}

func BenchmarkVerifyCached(b *testing.B) {
	k, _ := token.NewKeys([][]byte{keyA}, time.Hour)
	iss := &token.Issuer{Keys: k, AccessTTL: time.Hour}
	tok, _ := iss.Access(host, token.Subject{Name: "alice"}, pull(), now)
	c := token.NewVerifiedCache(k)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.VerifyAccess(tok.Raw, host, now); err != nil {
			b.Fatal(err)
		}
	}
}

// A flood of new tokens never empties the cache: once full, only the least
// recently used entries go.
func TestVerifiedCacheEvictsOldestNotAll(t *testing.T) {
	iss := issuer(t, keyA)
	c := token.NewVerifiedCache(iss.Keys)
	const n = 4096 + 10
	for i := range n {
		tok, err := iss.Access(host, token.Subject{Name: fmt.Sprintf("user-%d", i)}, pull(), now)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.VerifyAccess(tok.Raw, host, now); err != nil {
			t.Fatal(err)
		}
		if i > 0 && c.Len() < min(i+1, 4096) {
			t.Fatalf("after %d tokens the cache holds %d: it was emptied", i+1, c.Len())
		}
	}
	if c.Len() != 4096 {
		t.Errorf("the cache holds %d tokens, want its bound 4096", c.Len())
	}
}
