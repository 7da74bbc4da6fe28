// Package token issues and verifies qci-appci's own JWTs: short-lived access
// tokens that carry the granted registry access, and refresh tokens that
// carry who logged in and how. HS256 only, keys named by kid, several keys
// verify so that the signing key can be rotated.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
)

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 10 * time.Second

const method = "HS256"

// Keys signs with the first key and verifies with any.
type Keys struct {
	signKID string
	signKey []byte
	byKID   map[string][]byte
}

// NewKeys builds the key set; keys[0] signs.
func NewKeys(keys [][]byte) (*Keys, error) {
	if len(keys) == 0 {
		return nil, errors.New("token: no signing key")
	}
	k := &Keys{byKID: make(map[string][]byte, len(keys))}
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
// by a known kid, exp is required.
func (k *Keys) Verify(raw, host string, kind Kind, now time.Time) (*Claims, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{method}),
		jwt.WithIssuer(host),
		jwt.WithAudience(host),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	var c Claims
	_, err := p.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
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
	if c.Kind != kind {
		return nil, fmt.Errorf("%w: %w: %q, want %q", ErrInvalid, ErrWrongKind, c.Kind, kind)
	}
	return &c, nil
}

// NewID returns a random jti.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
