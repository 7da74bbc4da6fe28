package config_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/config"
)

func TestUpstreamTokenHosts(t *testing.T) {
	setValid(t)
	t.Setenv("QCI_UPSTREAM_TOKEN_HOSTS", "auth.example.com, token.example.com:8443")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.UpstreamTokenHosts) != 2 || c.UpstreamTokenHosts[0] != "auth.example.com" || strings.TrimSpace(c.UpstreamTokenHosts[1]) != "token.example.com:8443" {
		t.Errorf("token hosts = %q", c.UpstreamTokenHosts)
	}
	if len(config.Defaults().UpstreamTokenHosts) != 0 {
		t.Error("token hosts listed by default")
	}
	for _, bad := range []string{"https://auth.example.com", "auth.example.com/token", "a.example,,b.example", "user@auth.example.com", "auth.example.com:99999", "auth.example.com:x"} {
		t.Run(bad, func(t *testing.T) {
			setValid(t)
			t.Setenv("QCI_UPSTREAM_TOKEN_HOSTS", bad)
			_, err := config.Load()
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "QCI_UPSTREAM_TOKEN_HOSTS") {
				t.Errorf("err = %v, want one naming QCI_UPSTREAM_TOKEN_HOSTS", err)
			}
		})
	}
}

func TestManifestCacheBytes(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int64
	}{{"", 8 << 20}, {"0", 0}, {"16MiB", 16 << 20}, {"512 KiB", 512 << 10}, {"1000000", 1000000}} {
		setValid(t)
		if tc.env != "" {
			t.Setenv("QCI_MANIFEST_CACHE_BYTES", tc.env)
		}
		c, err := config.Load()
		if err != nil {
			t.Fatalf("%q: %v", tc.env, err)
		}
		if c.ManifestCacheBytes.N != tc.want {
			t.Errorf("QCI_MANIFEST_CACHE_BYTES=%q: %d bytes, want %d", tc.env, c.ManifestCacheBytes.N, tc.want)
		}
	}
	if config.Defaults().ManifestCacheBytes.N != 8<<20 {
		t.Errorf("default %d, want 8 MiB", config.Defaults().ManifestCacheBytes.N)
	}
	for _, bad := range []string{"-1", "lots", "8MB", "9999999999GiB"} {
		setValid(t)
		t.Setenv("QCI_MANIFEST_CACHE_BYTES", bad)
		if _, err := config.Load(); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "QCI_MANIFEST_CACHE_BYTES") {
			t.Errorf("%q: err = %v, want one naming QCI_MANIFEST_CACHE_BYTES", bad, err)
		}
	}
}

// TestParsedURLs: Parse returns the URLs it checked, ready to build from:
// the upstream without its trailing "/", the exposed URL's scheme and host.
func TestParsedURLs(t *testing.T) {
	setValid(t)
	t.Setenv("QCI_UPSTREAM_URL", "https://Quay.example:8443/")
	t.Setenv("QCI_EXPOSED_URL", "HTTPS://registry.ci.example.com")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if got := p.UpstreamURL.String(); got != "https://Quay.example:8443" {
		t.Errorf("upstream URL %q, want https://Quay.example:8443", got)
	}
	r := httptest.NewRequest(http.MethodGet, "http://elsewhere.example/v2/", nil)
	if scheme, host, ok := p.Public.Resolve(r); !p.Public.Fixed() || !ok || scheme != "https" || host != "registry.ci.example.com" {
		t.Errorf("public URL resolves to %s://%s (fixed %v, ok %v), want https://registry.ci.example.com", scheme, host, p.Public.Fixed(), ok)
	}
	c.ExposedURL = ""
	if p, err = c.Parse(); err != nil || p.Public.Fixed() {
		t.Errorf("no exposed URL: fixed %v, %v; want each request's host", p.Public.Fixed(), err)
	}
}
