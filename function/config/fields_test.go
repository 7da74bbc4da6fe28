package config

import (
	"strings"
	"testing"
)

// TestEnvFieldsArePrefixed guards fields added to Config: each names its
// variable in an envconfig tag, is read from a QCI_ name (except PORT), and
// every secret is a Secret.
func TestEnvFieldsArePrefixed(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range envFields() {
		if f.field.Tag.Get("envconfig") == "" {
			t.Errorf("field %s has no envconfig tag naming its variable", f.field.Name)
		}
		if f.name != "PORT" && !strings.HasPrefix(f.name, Prefix+"_") {
			t.Errorf("field %s is read from %s, which has no %s_ prefix", f.field.Name, f.name, Prefix)
		}
		if seen[f.name] {
			t.Errorf("two fields read %s", f.name)
		}
		seen[f.name] = true
		if f.secret && f.field.Type.String() != "config.Secret" {
			t.Errorf("secret field %s is a %s, which prints", f.field.Name, f.field.Type)
		}
	}
	if !seen["PORT"] || !seen["QCI_ROBOT_PASSWORD"] || !seen["QCI_TOKEN_AUDIENCES"] {
		t.Errorf("fields read: %v", seen)
	}
}
