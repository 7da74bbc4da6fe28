// Package token issues and verifies qci-appci's own JWTs: short-lived access
// tokens that carry the granted registry access, and refresh tokens that
// carry who logged in and how. HS256 only, keys named by kid, several keys
// verify so that the signing key can be rotated.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/qci-appci/qci-appci/function/registry"
)

// Kind tells an access token from a refresh token.
type Kind string

// The kinds of token issued.
const (
	KindAccess  Kind = "access"
	KindRefresh Kind = "refresh"
)

// Login says how a refresh token's holder logged in.
type Login string

// The ways to log in.
const (
	LoginRobot   Login = "robot"
	LoginCluster Login = "cluster"
)

// Claims are the claims of our tokens. Audience is a plain string (our
// issuer and verifier are the same), so golang-jwt's package-level
// MarshalSingleStringAsArray is never touched.
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  string           `json:"aud"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ExpiresAt *jwt.NumericDate `json:"exp"`
	ID        string           `json:"jti"`
	// Access is what an access token grants.
	Access []registry.Scope `json:"access,omitempty"`
	// Kind is our private claim telling access from refresh tokens.
	Kind Kind `json:"qci_kind"`
	// Login, UID, Groups and Extra are set in refresh tokens only: enough to
	// re-run a SubjectAccessReview without the user's cluster token.
	Login  Login               `json:"qci_login,omitempty"`
	UID    string              `json:"qci_uid,omitempty"`
	Groups []string            `json:"qci_groups,omitempty"`
	Extra  map[string][]string `json:"qci_extra,omitempty"`
	// Cluster names the cluster of a cluster login when the function knows
	// several: a refresh re-authorizes there. Access tokens carry it too,
	// for the access line.
	Cluster string `json:"qci_cluster,omitempty"`
}

var _ jwt.Claims = (*Claims)(nil)

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt, nil }

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt, nil }

// GetNotBefore implements jwt.Claims.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore, nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) {
	if c.Audience == "" {
		return nil, nil
	}
	return jwt.ClaimStrings{c.Audience}, nil
}

// Errors of verification. Callers outside answer one generic 401; these say
// why in logs and tests.
var (
	ErrInvalid    = errors.New("invalid token")
	ErrUnknownKey = errors.New("token signed by an unknown key")
	ErrWrongKind  = errors.New("wrong kind of token")
	ErrCritical   = errors.New("token has a crit header")
	ErrDate       = errors.New("token date is not an integer NumericDate")
	ErrTooLong    = errors.New("token lives longer than any we issue")
	// ErrNotBase64URL: a byte other than the base64url alphabet and the
	// two dots. Go's base64 decoders skip \r and \n even in strict mode,
	// so without this check a token with line breaks inserted would
	// decode to our token's bytes and verify.
	ErrNotBase64URL = errors.New("token holds a byte outside base64url")
)

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 10 * time.Second

const method = "HS256"

// Keys signs with the first key and verifies with any.
type Keys struct {
	signKID string
	signKey []byte
	byKID   map[string][]byte
	longest time.Duration
}

// NewKeys builds the key set; keys[0] signs. longest is the longest
// lifetime of a token issued with these keys (the larger of the access and
// refresh TTLs): Verify rejects a token whose exp lies further than that,
// plus Leeway, from now, as no issuer of ours made it.
func NewKeys(keys [][]byte, longest time.Duration) (*Keys, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no signing key")
	}
	if longest <= 0 {
		return nil, fmt.Errorf("token: longest token lifetime %v is not positive", longest)
	}
	k := &Keys{byKID: make(map[string][]byte, len(keys)), longest: longest}
	for i, key := range keys {
		if len(key) < 32 {
			return nil, fmt.Errorf("token: key %d is shorter than 32 bytes", i+1)
		}
		kid := KeyID(key)
		k.byKID[kid] = key
		if i == 0 {
			k.signKID, k.signKey = kid, key
		}
	}
	return k, nil
}

// KeyID is the kid of key: hex of the first 8 bytes of its SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// Sign signs claims with the signing key, naming it in the kid header.
func (k *Keys) Sign(c *Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = k.signKID
	s, err := t.SignedString(k.signKey)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return s, nil
}

// Verify checks raw as a token of kind issued for host (iss and aud) and
// returns its claims. The method is pinned to HS256, the key must be named
// by a known kid, exp is required. Stricter than golang-jwt's defaults, as
// nothing but our own issuer makes these tokens: every segment must be
// canonical base64url (no padding, no stray bits), a crit header is
// refused (we understand no extension), exp, nbf and iat must be integer
// NumericDates (see Claims.UnmarshalJSON), and exp may lie no further from
// now than the longest lifetime we issue, plus Leeway.
func (k *Keys) Verify(raw, host string, kind Kind, now time.Time) (*Claims, error) {
	if i := strings.IndexFunc(raw, func(r rune) bool { return !isBase64URLOrDot(r) }); i >= 0 {
		return nil, fmt.Errorf("%w: %w (at %d)", ErrInvalid, ErrNotBase64URL, i)
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{method}),
		jwt.WithIssuer(host),
		jwt.WithAudience(host),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
		jwt.WithStrictDecoding(),
	)
	var c Claims
	_, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			return nil, ErrCritical
		}
		kid, _ := t.Header["kid"].(string)
		key, ok := k.byKID[kid]
		if !ok {
			return nil, ErrUnknownKey
		}
		return key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if latest := now.Add(k.longest + Leeway); c.ExpiresAt.After(latest) {
		return nil, fmt.Errorf("%w: %w: exp %v is after %v", ErrInvalid, ErrTooLong, c.ExpiresAt.UTC(), latest.UTC())
	}
	if c.Kind != kind {
		return nil, fmt.Errorf("%w: %w: %q, want %q", ErrInvalid, ErrWrongKind, c.Kind, kind)
	}
	return &c, nil
}

// isBase64URLOrDot reports whether r may stand in a compact JWS: the
// base64url alphabet (RFC 4648 §5) and the dots between segments.
func isBase64URLOrDot(r rune) bool {
	return 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.'
}

// UnmarshalJSON decodes claims, refusing an exp, nbf or iat that is not an
// integer NumericDate: golang-jwt's NumericDate also takes fractions,
// exponents and numbers in strings, none of which our issuer writes.
func (c *Claims) UnmarshalJSON(b []byte) error {
	type plain Claims // without this method
	aux := struct {
		*plain
		IssuedAt  json.RawMessage `json:"iat"`
		NotBefore json.RawMessage `json:"nbf"`
		ExpiresAt json.RawMessage `json:"exp"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		raw  json.RawMessage
		dst  **jwt.NumericDate
	}{{"iat", aux.IssuedAt, &c.IssuedAt}, {"nbf", aux.NotBefore, &c.NotBefore}, {"exp", aux.ExpiresAt, &c.ExpiresAt}} {
		*d.dst = nil
		if d.raw == nil {
			continue
		}
		n, err := integerDate(d.raw)
		if err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrDate, d.name, d.raw, err)
		}
		*d.dst = jwt.NewNumericDate(time.Unix(n, 0))
	}
	return nil
}

// maxDate bounds a NumericDate to the year 9999, far beyond any token and
// within what time.Time and JSON's float64 numbers represent exactly.
const maxDate = 253402300799

// integerDate parses a NumericDate written as a non-negative JSON integer.
func integerDate(raw json.RawMessage) (int64, error) {
	s := string(raw)
	if s == "" {
		return 0, errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errors.New("not an integer")
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n > maxDate {
		return 0, errors.New("out of range")
	}
	return n, nil
}

// NewID returns a random jti.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
