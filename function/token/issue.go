package token

import (
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/qci-appci/qci-appci/function/registry"
)

// Issuer issues access and refresh tokens with fixed lifetimes.
type Issuer struct {
	Keys       *Keys
	AccessTTL  time.Duration
	RefreshTTL time.Duration
}

// Issued is a signed token and its claims.
type Issued struct {
	Raw    string
	Claims *Claims
}

// Subject is who a token is for: the user and, for refresh tokens, how they
// logged in and what a SubjectAccessReview needs to know of them.
type Subject struct {
	Name   string
	Login  Login
	UID    string
	Groups []string
	Extra  map[string][]string
	// Cluster names the cluster that reviewed a cluster login, when the
	// function knows several.
	Cluster string
}

// Access issues an access token for host granting access to sub.
func (i *Issuer) Access(host string, sub Subject, access []registry.Scope, now time.Time) (Issued, error) {
	c := i.claims(host, sub.Name, KindAccess, i.AccessTTL, now)
	c.Access = access
	c.Cluster = sub.Cluster
	return i.sign(c)
}

// Refresh issues a refresh token for host that lets sub get new access
// tokens without logging in again.
func (i *Issuer) Refresh(host string, sub Subject, now time.Time) (Issued, error) {
	c := i.claims(host, sub.Name, KindRefresh, i.RefreshTTL, now)
	c.Login, c.UID, c.Groups, c.Extra = sub.Login, sub.UID, sub.Groups, sub.Extra
	c.Cluster = sub.Cluster
	return i.sign(c)
}

func (i *Issuer) claims(host, subject string, kind Kind, ttl time.Duration, now time.Time) *Claims {
	now = now.Truncate(time.Second)
	return &Claims{
		Issuer:    host,
		Audience:  host,
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		ID:        NewID(),
		Kind:      kind,
	}
}

func (i *Issuer) sign(c *Claims) (Issued, error) {
	raw, err := i.Keys.Sign(c)
	if err != nil {
		return Issued{}, err
	}
	return Issued{Raw: raw, Claims: c}, nil
}

// SubjectOf returns the subject a refresh token's claims describe.
func SubjectOf(c *Claims) Subject {
	return Subject{Name: c.Subject, Login: c.Login, UID: c.UID, Groups: c.Groups, Extra: c.Extra, Cluster: c.Cluster}
}
