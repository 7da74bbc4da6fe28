package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/config"
)

// TestLoadNamesTheSecretFiles checks that Load records which secrets came
// from files, so that the function can re-read them, and that SetSecret
// trims a new file's contents as Load does.
func TestLoadNamesTheSecretFiles(t *testing.T) {
	setValid(t)
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("QCI_ROBOT_PASSWORD", "")
	os.Unsetenv("QCI_ROBOT_PASSWORD")
	t.Setenv("QCI_ROBOT_PASSWORD_FILE", path)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SecretFiles) != 1 || c.SecretFiles["QCI_ROBOT_PASSWORD"] != path {
		t.Errorf("SecretFiles %v, want only QCI_ROBOT_PASSWORD: %s", c.SecretFiles, path)
	}
	if !c.SetSecret("QCI_ROBOT_PASSWORD", []byte("rotated\r\n")) || c.RobotPassword != "rotated" {
		t.Errorf("SetSecret: %q", string(c.RobotPassword))
	}
	if c.SetSecret("QCI_UPSTREAM_URL", []byte("x")) {
		t.Error("SetSecret accepted a variable that is no secret")
	}

	setValid(t)
	if c, err := config.Load(); err != nil || c.SecretFiles != nil {
		t.Errorf("secrets from the environment: SecretFiles %v, %v", c.SecretFiles, err)
	}
}

// TestValidateSecrets checks a rotated secret the way Validate does, and
// nothing else: a clusters file that is gone by then does not refuse it.
func TestValidateSecrets(t *testing.T) {
	c := config.Defaults()
	c.RobotUsername, c.RobotPassword = "robot", "password"
	c.SigningKey = "0123456789abcdef0123456789abcdef\nfedcba9876543210fedcba9876543210"
	c.ClustersFile = filepath.Join(t.TempDir(), "gone.yaml")
	if err := c.ValidateSecrets(); err != nil {
		t.Errorf("valid secrets: %v", err)
	}
	for name, bad := range map[string]func(*config.Config){
		"QCI_ROBOT_USERNAME": func(c *config.Config) { c.RobotUsername = "" },
		"QCI_ROBOT_PASSWORD": func(c *config.Config) { c.RobotPassword = "" },
		"QCI_SIGNING_KEY":    func(c *config.Config) { c.SigningKey += "\nshort" },
	} {
		rotated := c
		bad(&rotated)
		if err := rotated.ValidateSecrets(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("bad %s: %v, want an error naming it", name, err)
		}
	}
}
