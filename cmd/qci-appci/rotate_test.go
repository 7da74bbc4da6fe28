package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/token"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/registrytest"
	"github.com/qci-appci/qci-appci/test/secretmount"
)

// TestSecretsRotateInPlace runs the real binary with its secrets mounted as
// the kubelet mounts them and updates them in place as the kubelet does:
// a robot password rotated on the upstream and then in the Secret is used
// for the next upstream token and is the only one that logs in; a broken
// signing key is refused with an ERROR line and the old key goes on; a new
// key signs while the old one still verifies, until it is dropped.
func TestSecretsRotateInPlace(t *testing.T) {
	const oldPass, newPass = "old-robot-password", "new-robot-password"
	const oldKey, newKey = "0123456789abcdef0123456789abcdef-old", "fedcba9876543210fedcba9876543210-new"
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: oldPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := reg.PushRandomImage(ctx, "ci_ci-operator_latest", 1, 4<<10); err != nil {
		t.Fatal(err)
	}
	// By tag: a manifest by digest may be answered from the manifest cache,
	// which a rotation keeps, and each pull here must reach the upstream.
	manifest := "/v2/" + repo + "/manifests/ci_ci-operator_latest"

	secrets := t.TempDir()
	robotDir, keyDir := filepath.Join(secrets, "robot"), filepath.Join(secrets, "signing-key")
	mount := func(dir string, files map[string]string) {
		t.Helper()
		if err := secretmount.Write(dir, files); err != nil {
			t.Fatal(err)
		}
	}
	mount(robotDir, map[string]string{"username": robotUser + "\n", "password": oldPass + "\n"})
	mount(keyDir, map[string]string{"keys": oldKey + "\n"})
	p := proxyproc.Start(t, binary, map[string]string{
		"QCI_UPSTREAM_URL":           reg.URL(),
		"QCI_ROBOT_USERNAME_FILE":    filepath.Join(robotDir, "username"),
		"QCI_ROBOT_PASSWORD_FILE":    filepath.Join(robotDir, "password"),
		"QCI_SIGNING_KEY_FILE":       filepath.Join(keyDir, "keys"),
		"QCI_KUBECONFIG":             "",
		"QCI_SECRET_RELOAD_INTERVAL": "1s",
	})
	auth := p.URL + "/v2/auth?scope=repository:" + repo + ":pull"
	status := func(user, pass string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, auth, nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tok struct {
			Token string `json:"token"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&tok)
		return resp.StatusCode, tok.Token
	}
	pull := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, p.URL+manifest, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// eventually polls cond until it holds: the binary re-reads its files
	// after a request, at most once a second here.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15s\n%s", what, p.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	pushFetches := reg.TokenFetches() // the push's own
	code, oldTok := status(robotUser, oldPass)
	if code != http.StatusOK || pull(oldTok) != http.StatusOK || reg.TokenFetches()-pushFetches != 1 {
		t.Fatalf("before rotation: login %d, %d upstream token fetches", code, reg.TokenFetches()-pushFetches)
	}

	// The robot's password is rotated on the upstream, then in the Secret.
	reg.SetPassword(newPass)
	mount(robotDir, map[string]string{"username": robotUser + "\n", "password": newPass + "\n"})
	eventually("a login with the new robot password", func() bool { c, _ := status(robotUser, newPass); return c == http.StatusOK })
	if c, _ := status(robotUser, oldPass); c != http.StatusUnauthorized {
		t.Errorf("the old robot password still logs in: %d", c)
	}
	if c := pull(oldTok); c != http.StatusOK {
		t.Errorf("a pull after the rotation: %d", c)
	}
	if n := reg.TokenFetches() - pushFetches; n != 2 {
		t.Errorf("%d upstream token fetches: the token was not fetched again with the new password", n)
	}
	if !strings.Contains(p.Logs(), `"message":"a secret file changed: its new value is in use","changed":["QCI_ROBOT_PASSWORD"]`) {
		t.Errorf("no log line names the changed secret:\n%s", p.Logs())
	}

	// A broken key (too short) is refused; the old key goes on.
	mount(keyDir, map[string]string{"keys": "short\n"})
	eventually("an ERROR line for the broken key", func() bool {
		_, _ = status(robotUser, newPass)
		return strings.Contains(p.Logs(), `"severity":"ERROR","message":"a secret file changed but its new value is invalid; keeping the previous values","changed":["QCI_SIGNING_KEY"]`)
	})
	if c, tok := status(robotUser, newPass); c != http.StatusOK || kid(t, tok) != token.KeyID([]byte(oldKey)) || pull(oldTok) != http.StatusOK {
		t.Errorf("after a broken key: login %d, the old key no longer in use", c)
	}

	// A new key first, the old one second: the new one signs, both verify.
	mount(keyDir, map[string]string{"keys": newKey + "\n" + oldKey + "\n"})
	var newTok string
	eventually("a token signed with the new key", func() bool {
		_, newTok = status(robotUser, newPass)
		return kid(t, newTok) == token.KeyID([]byte(newKey))
	})
	if pull(oldTok) != http.StatusOK || pull(newTok) != http.StatusOK {
		t.Error("a token of the old or the new key no longer verifies")
	}
	// The old key dropped: its tokens stop working.
	mount(keyDir, map[string]string{"keys": newKey + "\n"})
	eventually("the old key's token refused", func() bool { return pull(oldTok) == http.StatusUnauthorized })
	if pull(newTok) != http.StatusOK {
		t.Error("the new key's token no longer verifies")
	}

	for _, secret := range []string{oldPass, newPass, oldKey, newKey, "short"} {
		if strings.Contains(p.Logs(), secret) {
			t.Errorf("the logs hold a secret value (%s...)", secret[:3])
		}
	}
}

// kid is the key id in a JWT's header.
func kid(t *testing.T, jwt string) string {
	t.Helper()
	head, _, _ := strings.Cut(jwt, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatalf("token %q: %v", jwt, err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}
