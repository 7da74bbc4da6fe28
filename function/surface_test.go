package function_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

func TestBaseWithoutTokenIsChallenged(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp, body := e.do(method, "/v2/", nil, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s /v2/: %d", method, resp.StatusCode)
		}
		want := `Bearer realm="` + e.srv.URL + `/v2/auth",service="` + e.host() + `"`
		if got := resp.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("challenge %q, want %q", got, want)
		}
		if method == http.MethodGet && registryError(t, resp, body) != "UNAUTHORIZED" {
			t.Errorf("body %s", body)
		}
	}
	e.assertUpstreamSawNothing()
}

func TestBaseWithAnyValidTokenIsLocal(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	resp, ans, _ := e.login(robotUser, robotPass, nil) // login probe: no scope
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	resp, body := e.get("/v2/", ans.Token)
	if resp.StatusCode != 200 || string(body) != "{}" || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Errorf("GET /v2/ with token: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	e.assertUpstreamSawNothing()
}

func TestHealth(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	for _, p := range []string{"/healthz", "/health"} {
		if resp, body := e.get(p, ""); resp.StatusCode != 200 || string(body) != "ok\n" {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
	e.assertUpstreamSawNothing()
}

func TestWritesAreRefusedBeforeAnyTokenCheck(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	good := e.pullToken()
	e.reg.ResetRequests()
	paths := []string{"/v2/", "/v2/openshift/ci/manifests/" + tag, "/v2/openshift/ci/blobs/uploads/", "/v2/_catalog"}
	for _, method := range []string{http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions} {
		for _, p := range paths {
			for _, tok := range []string{"", good, "garbage"} {
				h := http.Header{}
				if tok != "" {
					h.Set("Authorization", "Bearer "+tok)
				}
				resp, body := e.do(method, p, h, strings.NewReader("x"))
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("%s %s: %d Allow=%q", method, p, resp.StatusCode, resp.Header.Get("Allow"))
					continue
				}
				if resp.Header.Get("WWW-Authenticate") != "" {
					t.Errorf("%s %s: 405 carries a challenge", method, p)
				}
				if code := registryError(t, resp, body); code != "UNSUPPORTED" {
					t.Errorf("%s %s: code %s", method, p, code)
				}
			}
		}
	}
	resp, _ := e.do(http.MethodPut, "/v2/auth", nil, nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, POST" {
		t.Errorf("PUT /v2/auth: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	e.assertUpstreamSawNothing()
}

// TestTokenChecks: every way a presented token can be wrong gets a 401
// challenge with error="invalid_token", and nothing reaches the upstream.
func TestTokenChecks(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	good := e.pullToken()
	_, ans, _ := e.login(robotUser, robotPass, url.Values{"scope": {"repository:" + repo + ":pull"}, "offline_token": {"true"}})
	path := "/v2/openshift/ci/manifests/" + tag

	keys, err := token.NewKeys([][]byte{[]byte(e.key)}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sign := func(mut func(c *token.Claims), k *token.Keys) string {
		c := &token.Claims{Issuer: e.host(), Audience: e.host(), Subject: "mallory", ID: "x", Kind: token.KindAccess,
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
			Access: []registry.Scope{registry.PullScope(repo)}}
		mut(c)
		raw, err := k.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	otherKeys, _ := token.NewKeys([][]byte{[]byte("another-key-another-key-another-key")}, 24*time.Hour)
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"iss": e.host(), "aud": e.host(), "exp": now.Add(time.Hour).Unix(),
		"qci_kind": "access", "access": []any{map[string]any{"type": "repository", "name": repo, "actions": []string{"pull"}}}})
	none.Header["kid"] = token.KeyID([]byte(e.key))
	noneRaw, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)

	// The control: a token signed here with the same rules passes.
	if resp, _ := e.get(path, sign(func(*token.Claims) {}, keys)); resp.StatusCode != 200 {
		t.Fatalf("control token: %d", resp.StatusCode)
	}
	e.reg.ResetRequests()
	cases := map[string]string{
		"garbage":                 "garbage",
		"alg none":                noneRaw,
		"wrong key":               sign(func(*token.Claims) {}, otherKeys),
		"expired":                 sign(func(c *token.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) }, keys),
		"not yet valid":           sign(func(c *token.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) }, keys),
		"other audience":          sign(func(c *token.Claims) { c.Audience = "other.example.com" }, keys),
		"other issuer":            sign(func(c *token.Claims) { c.Issuer = "other.example.com" }, keys),
		"refresh token as access": ans.RefreshToken,
		"access as refresh kind":  sign(func(c *token.Claims) { c.Kind = token.KindRefresh }, keys),
		"truncated signature":     good[:len(good)-4],
		"no exp":                  sign(func(c *token.Claims) { c.ExpiresAt = nil }, keys),
		"exp past longest TTL":    sign(func(c *token.Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(48 * time.Hour)) }, keys),
	}
	for name, tok := range cases {
		resp, body := e.get(path, tok)
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.Contains(ch, `error="invalid_token"`) || !strings.Contains(ch, `scope="repository:openshift/ci:pull"`) {
			t.Errorf("%s: %d %q", name, resp.StatusCode, ch)
			continue
		}
		if registryError(t, resp, body) != "UNAUTHORIZED" {
			t.Errorf("%s: body %s", name, body)
		}
	}
	// Basic credentials on a registry path are not a token.
	h := http.Header{}
	h.Set("Authorization", "Basic b3BlbnNoaWZ0K2NpX3JvYm90OnJvYm90LXBhc3N3b3JkLXVwc3RyZWFt")
	if resp, _ := e.do(http.MethodGet, path, h, nil); resp.StatusCode != 401 || strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("Basic on a registry path: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	e.assertUpstreamSawNothing()
}

// TestPathChecks: with a valid token, whatever is not a read of the served
// repository is refused here, on the raw path, and never forwarded.
func TestPathChecks(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	good := e.pullToken()
	_, probe, _ := e.login(robotUser, robotPass, nil)
	_, otherScope, _ := e.login(robotUser, robotPass, url.Values{"scope": {"repository:openshift/other:pull"}})
	e.reg.ResetRequests()
	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/v2/_catalog", 404, "UNSUPPORTED"},
		{"/v2/openshift/ci/other/manifests/latest", 404, "NAME_UNKNOWN"},
		{"/v2/openshift/ci/other/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000", 404, "NAME_UNKNOWN"},
		{"/v2/ci/ci_operator/manifests/latest", 404, "NAME_UNKNOWN"},
		{"/v2/openshift/ci/../other/manifests/latest", 404, "NAME_INVALID"},
		{"/v2/openshift/other/../ci/manifests/latest", 404, "NAME_INVALID"},
		{"/v2/openshift%2Fci/manifests/latest", 404, "UNSUPPORTED"},
		{"/v2/openshift/ci/manifests/%2e%2e%2f%2e%2e", 404, "UNSUPPORTED"},
		{"/v2/openshift//ci/manifests/latest", 404, "NAME_INVALID"},
		{"/v2/openshift/ci/blobs/uploads/", 404, "UNSUPPORTED"},
		{"/v2/openshift/ci/manifests/bad:tag:x", 400, "MANIFEST_INVALID"},
		{"/v2/openshift/ci/blobs/latest", 400, "DIGEST_INVALID"},
		{"/v1/search", 404, "UNSUPPORTED"},
	}
	for _, c := range cases {
		resp, body := e.get(c.path, good)
		if resp.StatusCode != c.status {
			t.Errorf("%s: %d, want %d (%s)", c.path, resp.StatusCode, c.status, body)
			continue
		}
		if code := registryError(t, resp, body); code != c.code {
			t.Errorf("%s: code %s, want %s", c.path, code, c.code)
		}
	}
	// A token without pull on the repository (login probe, other scope):
	// 401 insufficient_scope naming the scope, so the client asks again.
	for name, tok := range map[string]string{"probe": probe.Token, "other scope": otherScope.Token} {
		resp, body := e.get("/v2/openshift/ci/manifests/"+tag, tok)
		ch := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || !strings.Contains(ch, `scope="repository:openshift/ci:pull"`) || !strings.Contains(ch, `error="insufficient_scope"`) {
			t.Errorf("%s: %d %q", name, resp.StatusCode, ch)
		}
		registryError(t, resp, body)
	}
	// Without a token, the challenge names the scope only for repository paths.
	resp, _ := e.get("/v2/openshift/ci/tags/list", "")
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `scope="repository:openshift/ci:pull"`) || strings.Contains(ch, "error=") {
		t.Errorf("tags without token: %q", ch)
	}
	resp, _ = e.get("/v2/_catalog", "")
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || strings.Contains(ch, "scope=") {
		t.Errorf("catalog without token: %d %q", resp.StatusCode, ch)
	}
	e.assertUpstreamSawNothing()
}
