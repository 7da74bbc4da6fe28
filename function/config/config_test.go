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
