package config_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/loginlimit"
)

func TestLoginLimitDefaults(t *testing.T) {
	setValid(t)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginRate != loginlimit.DefaultRate || c.LoginBurst != loginlimit.DefaultBurst || c.ClientIPHeader != "" {
		t.Errorf("login limit from the env defaults: rate %v burst %v header %q, want %v %v \"\"",
			c.LoginRate, c.LoginBurst, c.ClientIPHeader, loginlimit.DefaultRate, loginlimit.DefaultBurst)
	}
	d := config.Defaults()
	if d.LoginRate != c.LoginRate || d.LoginBurst != c.LoginBurst {
		t.Errorf("Defaults() login limit %v/%v differs from the env defaults %v/%v", d.LoginRate, d.LoginBurst, c.LoginRate, c.LoginBurst)
	}
}

func TestLoginLimitValues(t *testing.T) {
	setValid(t)
	t.Setenv("QCI_LOGIN_RATE", "0.5")
	t.Setenv("QCI_LOGIN_BURST", " 20 ")
	t.Setenv("QCI_CLIENT_IP_HEADER", "X-Forwarded-For")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.LoginRate != 0.5 || c.LoginBurst != 20 || c.ClientIPHeader != "X-Forwarded-For" {
		t.Errorf("got rate %v burst %v header %q", c.LoginRate, c.LoginBurst, c.ClientIPHeader)
	}
}

func TestLoginLimitBadValues(t *testing.T) {
	for _, c := range []struct{ name, value, want string }{
		{"QCI_LOGIN_RATE", "fast", "QCI_LOGIN_RATE must be a positive number"},
		{"QCI_LOGIN_RATE", "0", "QCI_LOGIN_RATE must be a positive number"},
		{"QCI_LOGIN_RATE", "-1", "QCI_LOGIN_RATE must be a positive number"},
		{"QCI_LOGIN_RATE", "+Inf", "QCI_LOGIN_RATE must be a positive number"},
		{"QCI_LOGIN_BURST", "0", "QCI_LOGIN_BURST must be a whole number of at least 1"},
		{"QCI_LOGIN_BURST", "1.5", "QCI_LOGIN_BURST must be a whole number of at least 1"},
		{"QCI_CLIENT_IP_HEADER", "X Forwarded For", "QCI_CLIENT_IP_HEADER"},
		{"QCI_CLIENT_IP_HEADER", "X-Forwarded-For:", "QCI_CLIENT_IP_HEADER"},
	} {
		t.Run(c.name+"="+c.value, func(t *testing.T) {
			setValid(t)
			t.Setenv(c.name, c.value)
			_, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s=%q: %v, want a problem naming %q", c.name, c.value, err, c.want)
			}
		})
	}
}
