package config

import (
	"os"
	"strings"
)

// secretFiles are the paths of the secrets set as <NAME>_FILE, by name.
func secretFiles() map[string]string {
	var files map[string]string
	var c Config
	for _, s := range c.secrets() {
		if path := os.Getenv(s.env + "_FILE"); path != "" {
			if files == nil {
				files = map[string]string{}
			}
			files[s.env] = path
		}
	}
	return files
}

// SetSecret sets the secret of the variable name (QCI_ROBOT_PASSWORD) to
// the contents of its file, trimmed as Load trims them, and reports whether
// name is a secret's.
func (c *Config) SetSecret(name string, contents []byte) bool {
	for _, s := range c.secrets() {
		if s.env == name {
			*s.value = Secret(strings.TrimRight(string(contents), "\r\n"))
			return true
		}
	}
	return false
}

// ValidateSecrets checks only c's secrets (the robot username and
// password, the signing keys), as Validate checks them: what a rotation
// of their files changes. The rest of c was validated when it was
// loaded, and is not read again (the clusters file, for one).
func (c *Config) ValidateSecrets() error {
	d := Defaults()
	to := d.secrets()
	for i, s := range c.secrets() {
		*to[i].value = *s.value
	}
	return d.Validate()
}
