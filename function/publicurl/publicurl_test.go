package publicurl_test

import (
	"crypto/tls"
	"net/http/httptest"
	"testing"

	"github.com/qci-appci/qci-appci/function/publicurl"
)

func TestResolve(t *testing.T) {
	fixed, err := publicurl.New("https://registry.ci.example.com:8443")
	if err != nil {
		t.Fatal(err)
	}
	perRequest, _ := publicurl.New("")
	tests := []struct {
		name         string
		r            publicurl.Resolver
		host, xfp    string
		tls          bool
		scheme, want string
		ok           bool
	}{
		{"fixed ignores Host", fixed, "evil.example.com", "http", false, "https", "registry.ci.example.com:8443", true},
		{"plain", perRequest, "localhost:8080", "", false, "http", "localhost:8080", true},
		{"behind a TLS front end", perRequest, "r.example.com", "https", false, "https", "r.example.com", true},
		{"first of a list", perRequest, "r.example.com", "https, http", false, "https", "r.example.com", true},
		{"unknown proto ignored", perRequest, "r.example.com", "gopher", true, "https", "r.example.com", true},
		{"IPv6", perRequest, "[::1]:8080", "", false, "http", "[::1]:8080", true},
		{"bad host", perRequest, "a b\"c", "", false, "", "", false},
		{"empty host", perRequest, "", "", false, "", "", false},
	}
	for _, tc := range tests {
		req := httptest.NewRequest("GET", "/v2/", nil)
		req.Host = tc.host
		if tc.xfp != "" {
			req.Header.Set("X-Forwarded-Proto", tc.xfp)
		}
		if tc.tls {
			req.TLS = &tls.ConnectionState{}
		}
		scheme, host, ok := tc.r.Resolve(req)
		if scheme != tc.scheme || host != tc.want || ok != tc.ok {
			t.Errorf("%s: %q %q %v, want %q %q %v", tc.name, scheme, host, ok, tc.scheme, tc.want, tc.ok)
		}
	}
	if _, err := publicurl.New("ftp://x"); err == nil {
		t.Error("ftp URL accepted")
	}
}
