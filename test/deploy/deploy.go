// Package deploy holds what the deployment tests share: the configuration's
// environment variable names, derived from the config package's envconfig
// tags so that deployment files cannot drift from the code.
package deploy

import (
	"reflect"

	"github.com/qci-appci/qci-appci/function/config"
)

// EnvNames returns every variable the function reads, with the <NAME>_FILE
// form of each secret, and whether it is a secret.
func EnvNames() map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeOf(config.Config{})
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("envconfig")
		if tag == "" || f.Tag.Get("ignored") == "true" {
			continue
		}
		name := config.Prefix + "_" + tag
		if tag == "PORT" {
			name = "PORT" // envconfig falls back to the unprefixed name
		}
		secret := f.Tag.Get("secret") == "true"
		names[name] = secret
		if secret {
			names[name+"_FILE"] = true
		}
	}
	return names
}
