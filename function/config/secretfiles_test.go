package config_test

import (
	"os"
	"path/filepath"
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
