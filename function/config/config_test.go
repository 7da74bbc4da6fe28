package config_test

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/config"
)

const key = "0123456789abcdef0123456789abcdef"

// clearEnv unsets every variable the config reads, for the test's duration.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "QCI_") || name == "PORT" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
}

func setValid(t *testing.T) {
	clearEnv(t)
	t.Setenv("QCI_ROBOT_USERNAME", "openshift+robot")
	t.Setenv("QCI_ROBOT_PASSWORD", "hunter2-robot-password")
	t.Setenv("QCI_SIGNING_KEY", key)
}

func TestLoadDefaults(t *testing.T) {
	setValid(t)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults()
	if c.Port != want.Port || c.UpstreamURL != want.UpstreamURL || c.UpstreamRepository != want.UpstreamRepository ||
		c.TokenTTL.Duration != want.TokenTTL.Duration || c.RefreshTTL.Duration != want.RefreshTTL.Duration ||
		c.AuthzNamespace != want.AuthzNamespace || c.ReviewCacheTTL.Duration != want.ReviewCacheTTL.Duration ||
		c.ExposedURL != "" || c.Kubeconfig != "" || len(c.TokenAudiences) != 0 {
		t.Errorf("Load with defaults = %v, want %v", c, want)
	}
	if c.Port != 8080 || c.UpstreamURL != "https://quay.io" || c.UpstreamRepository != "openshift/ci" || c.TokenTTL.Duration != time.Hour {
		t.Errorf("defaults differ from DESIGN.md: %v", c)
	}
}

func TestLoadValues(t *testing.T) {
	setValid(t)
	t.Setenv("PORT", "9090")
	t.Setenv("QCI_EXPOSED_URL", "https://registry.ci.example.com")
	t.Setenv("QCI_TOKEN_TTL", "2h")
	t.Setenv("QCI_TOKEN_AUDIENCES", "https://registry.ci.example.com,other")
	t.Setenv("QCI_SIGNING_KEY", key+"-new\n"+key+"-old\n")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 9090 || c.ExposedURL != "https://registry.ci.example.com" || c.TokenTTL.Duration != 2*time.Hour {
		t.Errorf("got %v", c)
	}
	if len(c.TokenAudiences) != 2 || c.TokenAudiences[1] != "other" {
		t.Errorf("audiences = %q", c.TokenAudiences)
	}
	keys := c.SigningKeys()
	if len(keys) != 2 || string(keys[0]) != key+"-new" {
		t.Errorf("keys = %q", keys)
	}
}

func TestSecretsFromFiles(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("QCI_ROBOT_USERNAME_FILE", write("user", "openshift+robot\n"))
	t.Setenv("QCI_ROBOT_PASSWORD_FILE", write("pass", "from-a-file\n"))
	t.Setenv("QCI_SIGNING_KEY_FILE", write("key", key+"\n"))
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.RobotUsername != "openshift+robot" || c.RobotPassword != "from-a-file" || string(c.SigningKeys()[0]) != key {
		t.Errorf("file secrets not read, or newline kept: %q", c.SigningKeys())
	}
}

func TestEveryProblemListed(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QCI_ROBOT_PASSWORD", "set-twice")
	t.Setenv("QCI_ROBOT_PASSWORD_FILE", pw)
	t.Setenv("QCI_SIGNING_KEY", "too-short")
	t.Setenv("QCI_UPSTREAM_URL", "quay.io")
	t.Setenv("QCI_EXPOSED_URL", "https://x.example/path")
	t.Setenv("QCI_TOKEN_TTL", "30s")
	t.Setenv("QCI_REFRESH_TTL", "forever")
	t.Setenv("QCI_KUBECONFIG", filepath.Join(dir, "missing"))
	t.Setenv("QCI_UPSTREAM_REPOSITORY", "Not/Valid")
	t.Setenv("PORT", "eighty")
	_, err := config.Load()
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"QCI_ROBOT_USERNAME (or QCI_ROBOT_USERNAME_FILE) is required",
		"QCI_ROBOT_PASSWORD and QCI_ROBOT_PASSWORD_FILE are both set",
		"QCI_SIGNING_KEY: key 1 is 9 bytes",
		"QCI_UPSTREAM_URL",
		"QCI_EXPOSED_URL",
		"QCI_TOKEN_TTL 30s is shorter than 1m0s",
		`QCI_REFRESH_TTL "forever" is not a duration`,
		"QCI_KUBECONFIG",
		"QCI_UPSTREAM_REPOSITORY",
		"PORT must be a number",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "set-twice") || strings.Contains(msg, "too-short") {
		t.Errorf("error leaks a secret: %s", msg)
	}
}

func TestSecretsNeverPrint(t *testing.T) {
	setValid(t)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("config", "config", c)
	outputs := []string{sb.String(), c.String(), fmt.Sprintf("%v %+v %#v %s %q", c, c, c, c.RobotPassword, c.SigningKey)}
	for _, out := range outputs {
		for _, secret := range []string{"hunter2-robot-password", key, "openshift+robot"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows secret %q: %s", secret, out)
			}
		}
	}
	if !strings.Contains(sb.String(), `"upstream_url":"https://quay.io"`) {
		t.Errorf("log lacks the non-secret values: %s", sb.String())
	}
}

// TestNoUnprefixedFallback: the unprefixed name of a variable is never
// read (a shell's KUBECONFIG must not turn on cluster login against that
// cluster), and QCI_PORT is not PORT.
func TestNoUnprefixedFallback(t *testing.T) {
	clearEnv(t)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QCI_ROBOT_USERNAME", "openshift+robot")
	t.Setenv("QCI_SIGNING_KEY", key)
	for name, value := range map[string]string{
		"KUBECONFIG":          kubeconfig,
		"ROBOT_PASSWORD":      "from-the-shell",
		"ROBOT_USERNAME":      "someone-else",
		"SIGNING_KEY":         key + "-shell",
		"EXPOSED_URL":         "https://elsewhere.example",
		"UPSTREAM_URL":        "https://registry.example",
		"UPSTREAM_REPOSITORY": "other/repo",
		"TOKEN_TTL":           "2h",
		"REFRESH_TTL":         "48h",
		"AUTHZ_NAMESPACE":     "other",
		"TOKEN_AUDIENCES":     "shell-audience",
		"REVIEW_CACHE_TTL":    "1m",
	} {
		t.Setenv(name, value)
	}
	_, err := config.Load()
	if err == nil || !strings.Contains(err.Error(), "QCI_ROBOT_PASSWORD (or QCI_ROBOT_PASSWORD_FILE) is required") {
		t.Fatalf("ROBOT_PASSWORD was read for QCI_ROBOT_PASSWORD: err = %v", err)
	}
	t.Setenv("QCI_ROBOT_PASSWORD", "hunter2-robot-password")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := config.Defaults()
	if c.Kubeconfig != "" || c.RobotUsername != "openshift+robot" || string(c.SigningKeys()[0]) != key || len(c.SigningKeys()) != 1 ||
		c.ExposedURL != "" || c.UpstreamURL != want.UpstreamURL || c.UpstreamRepository != want.UpstreamRepository ||
		c.TokenTTL.Duration != want.TokenTTL.Duration || c.RefreshTTL.Duration != want.RefreshTTL.Duration ||
		c.AuthzNamespace != want.AuthzNamespace || len(c.TokenAudiences) != 0 || c.ReviewCacheTTL.Duration != want.ReviewCacheTTL.Duration {
		t.Errorf("an unprefixed variable was read: %v", c)
	}

	// PORT is the one unprefixed name, and the only name of the port.
	t.Setenv("PORT", "9090")
	if c, err := config.Load(); err != nil || c.Port != 9090 {
		t.Errorf("PORT=9090: port %d, err %v", c.Port, err)
	}
	os.Unsetenv("PORT")
	t.Setenv("QCI_PORT", "9090")
	c, err = config.Load()
	if c.Port != 8080 {
		t.Errorf("QCI_PORT was read: port %d", c.Port)
	}
	if err == nil || !strings.Contains(err.Error(), "QCI_PORT is not read: the listen port is PORT") {
		t.Errorf("QCI_PORT not reported: %v", err)
	}
}

// TestUnknownVariablesReported: a QCI_ variable the function does not read
// is reported with every other problem; the _FILE forms of secrets and the
// variables of the repository's own tools are not.
func TestUnknownVariablesReported(t *testing.T) {
	clearEnv(t)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QCI_ROBOT_USERNAME", "openshift+robot")
	t.Setenv("QCI_SIGNING_KEY_FILE", keyFile)
	t.Setenv("QCI_UPSTREAM_REPO", "openshift/other")
	t.Setenv("QCI_SIGNINGKEY", "x")
	t.Setenv("QCI_TEST_SERVE_FUNCTION", "8081")
	t.Setenv("QCI_KUBE_APISERVER", "/usr/bin/kube-apiserver")
	t.Setenv("QCI_TOKEN_TTL", "forever")
	_, err := config.Load()
	if !errors.Is(err, config.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"QCI_UPSTREAM_REPO is not a variable qci-appci knows",
		"QCI_SIGNINGKEY is not a variable qci-appci knows",
		"QCI_ROBOT_PASSWORD (or QCI_ROBOT_PASSWORD_FILE) is required",
		`QCI_TOKEN_TTL "forever" is not a duration`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	for _, notWant := range []string{"QCI_SIGNING_KEY_FILE", "QCI_TEST_SERVE_FUNCTION", "QCI_KUBE_APISERVER", "QCI_SIGNING_KEY "} {
		if strings.Contains(msg, notWant) {
			t.Errorf("error reports %q, which is known:\n%s", notWant, msg)
		}
	}

	// With the typos fixed, the same environment loads.
	os.Unsetenv("QCI_UPSTREAM_REPO")
	os.Unsetenv("QCI_SIGNINGKEY")
	t.Setenv("QCI_TOKEN_TTL", "1h")
	t.Setenv("QCI_ROBOT_PASSWORD", "hunter2-robot-password")
	if _, err := config.Load(); err != nil {
		t.Errorf("known variables only: %v", err)
	}
}

// TestTokenAudiencesTrimmed: entries of QCI_TOKEN_AUDIENCES lose the spaces
// around them; one that is only spaces is a problem.
func TestTokenAudiencesTrimmed(t *testing.T) {
	setValid(t)
	t.Setenv("QCI_TOKEN_AUDIENCES", " https://kubernetes.default.svc , app.ci\t")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TokenAudiences) != 2 || c.TokenAudiences[0] != "https://kubernetes.default.svc" || c.TokenAudiences[1] != "app.ci" {
		t.Errorf("audiences = %q", c.TokenAudiences)
	}
	t.Setenv("QCI_TOKEN_AUDIENCES", "app.ci, ")
	if _, err := config.Load(); err == nil || !strings.Contains(err.Error(), "QCI_TOKEN_AUDIENCES holds an empty audience") {
		t.Errorf("empty audience: err = %v", err)
	}
}
