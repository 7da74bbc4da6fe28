package quaytest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// issuer is the iss of quay's tokens (instance_keys.service_name).
const issuer = "quay"

// access is one entry of a token's access claim.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are the claims of quay's registry JWT (util/security/registry_jwt.py).
type claims struct {
	jwt.RegisteredClaims
	Access  []access       `json:"access"`
	Context map[string]any `json:"context"`
}

// canPull reports whether the token grants pull on repo.
func (c *claims) canPull(repo, host string) bool {
	for _, a := range c.Access {
		if a.Type == "repository" && (a.Name == repo || a.Name == host+"/"+repo) && slices.Contains(a.Actions, "pull") {
			return true
		}
	}
	return false
}

// scopePattern is SCOPE_REGEX_TEMPLATE of endpoints/v2/v2auth.py.
func (s *Server) scopePattern() *regexp.Regexp {
	return regexp.MustCompile(`^repository:((?:` + regexp.QuoteMeta(s.Host()) + `\/)?((?:[\.a-zA-Z0-9_\-]+\/)*[\.a-zA-Z0-9_\-]+)):((?:push|pull|\*)(?:,(?:push|pull|\*))*)$`)
}

// issueToken is generate_registry_jwt (endpoints/v2/v2auth.py): Basic
// credentials of the robot, scopes downscoped to what the robot may do
// (pull on the served repository; nothing on any other), and
// {"token": …} with no expires_in: the JWT's exp says it.
func (s *Server) issueToken(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD, OPTIONS")
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	user, pass, hasBasic := req.BasicAuth()
	s.mu.Lock()
	want := s.opts.Password
	s.mu.Unlock()
	authed := hasBasic && user == s.opts.Username && pass == want
	if req.Header.Get("Authorization") != "" && !authed {
		msg := "Could not find robot with specified username"
		if hasBasic && user == s.opts.Username {
			msg = "Token does not match robot"
		}
		s.v2Error(w, http.StatusUnauthorized, "UNAUTHORIZED", msg, "")
		return
	}
	scopes := req.URL.Query()["scope"]
	if !authed && len(scopes) == 0 {
		s.v2Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the requested resource is not authorized", "")
		return
	}
	grants := []access{}
	for _, scope := range scopes {
		if scope == "" {
			if !authed {
				s.v2Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the requested resource is not authorized", "")
				return
			}
			continue
		}
		m := s.scopePattern().FindStringSubmatch(scope)
		if m == nil {
			s.v2Error(w, http.StatusBadRequest, "INVALID_REQUEST", "Unable to decode repository and actions: "+scope, "")
			return
		}
		actions := []string{}
		if authed && m[2] == s.opts.Repository && slices.Contains(strings.Split(m[3], ","), "pull") {
			actions = append(actions, "pull")
		}
		grants = append(grants, access{Type: "repository", Name: m[1], Actions: actions})
	}
	sub := "(anonymous)"
	if authed {
		sub = user
	}
	s.mu.Lock()
	key, kid := s.key, s.kid
	s.fetches++
	s.mu.Unlock()
	now := s.opts.Now()
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: sub, Audience: jwt.ClaimStrings{req.URL.Query().Get("service")},
			NotBefore: jwt.NewNumericDate(now), IssuedAt: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(s.opts.TokenLifetime)),
		},
		Access:  grants,
		Context: map[string]any{"version": 2, "kind": "robot", "user": sub},
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = kid
	signed, err := t.SignedString(key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": signed})
}

// errNoToken is a request without a Bearer token.
var errNoToken = errors.New("no bearer token")

// verify checks a request's Bearer token as decode_bearer_header does:
// RS256 with the instance key its kid names, iss quay, aud the server's
// host, unexpired.
func (s *Server) verify(req *http.Request) (*claims, error) {
	raw, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, errNoToken
	}
	s.mu.Lock()
	key, kid := s.key, s.kid
	s.mu.Unlock()
	var c claims
	_, err := jwt.ParseWithClaims(strings.TrimSpace(raw), &c, func(t *jwt.Token) (any, error) {
		if t.Header["kid"] != kid {
			return nil, fmt.Errorf("unknown kid %v", t.Header["kid"])
		}
		return &key.PublicKey, nil
	}, jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(issuer), jwt.WithAudience(s.Host()),
		jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.opts.Now), jwt.WithLeeway(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("invalid bearer token: %w", err)
	}
	return &c, nil
}
