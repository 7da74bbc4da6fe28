package upstream

import (
	"errors"
	"net/url"
	"testing"
)

// TestRealmPolicy is the table of go-containerregistry's
// TestValidateRealmURLSameHost and TestValidateRealmURLUnspecified, with
// qci-appci's stricter trust domain: the upstream's host, its registrable
// domain over https, or a host the operator lists.
func TestRealmPolicy(t *testing.T) {
	tests := []struct {
		upstream string
		hosts    []string
		realm    string
		ok       bool
	}{
		// The upstream's own host and port.
		{"https://quay.io", nil, "https://quay.io/v2/auth", true},
		{"https://quay.io", nil, "https://QUAY.io:443/v2/auth", true},
		{"https://quay.io", nil, "https://quay.io:8443/v2/auth", true}, // its registrable domain
		{"http://localhost:5000", nil, "http://localhost:5000/token", true},
		{"http://localhost:5000", nil, "http://localhost:5001/token", false},
		{"http://localhost:5000", nil, "https://localhost:5000/token", true},
		{"https://quay.io", nil, "http://quay.io:443/v2/auth", false}, // downgrade
		{"https://quay.io", nil, "http://quay.io/v2/auth", false},
		// The registrable domain, over https only.
		{"https://registry-1.docker.io", nil, "https://auth.docker.io/token", true},
		{"https://registry-1.docker.io", nil, "http://auth.docker.io/token", false},
		{"https://quay.io", nil, "https://evil.example.com/v2/auth", false},
		{"https://quay.io", nil, "https://quay.io.evil.example.com/v2/auth", false},
		{"https://quay.io", nil, "https://quay.io./v2/auth", false},
		{"https://a.appspot.com", nil, "https://b.appspot.com/token", false}, // a public suffix is no common domain
		{"http://localhost:5000", nil, "https://other.localhost/token", false},
		// IP literals only to themselves, in every spelling.
		{"http://127.0.0.1:5000", nil, "http://127.0.0.1:5000/token", true},
		{"http://127.0.0.1:5000", nil, "https://127.0.0.2/token", false},
		{"https://10.0.0.1", nil, "https://192.168.0.1/token", false}, // both "0.1" by the public suffix rule "*"
		{"https://quay.io", nil, "https://127.1/token", false},
		{"https://quay.io", nil, "https://0x7f.1/token", false},
		{"https://quay.io", nil, "https://2130706433/token", false},
		{"https://quay.io", nil, "https://[::1]/token", false},
		{"https://quay.io", nil, "https://169.254.169.254/token", false},
		{"https://a.b.0x10", nil, "https://c.b.0x10/token", false},
		// The operator's list.
		{"https://quay.io", []string{"auth.example.com"}, "https://auth.example.com/token", true},
		{"https://quay.io", []string{" Auth.Example.com "}, "https://auth.example.com:8443/token", true},
		{"https://quay.io", []string{"auth.example.com:443"}, "https://auth.example.com:8443/token", false},
		{"https://quay.io", []string{"auth.example.com"}, "http://auth.example.com/token", false},
		{"https://quay.io", []string{"auth.example.com"}, "https://other.example.com/token", false},
		{"https://quay.io", []string{"10.1.2.3"}, "https://10.1.2.3/token", true},
		// Not URLs a token may go to.
		{"https://quay.io", nil, "ftp://quay.io/token", false},
		{"https://quay.io", nil, "https://user:pw@quay.io/token", false},
		{"https://quay.io", nil, "/v2/auth", false},
	}
	for _, tc := range tests {
		up, err := url.Parse(tc.upstream)
		if err != nil {
			t.Fatal(err)
		}
		realm, err := url.Parse(tc.realm)
		if err != nil {
			t.Fatal(err)
		}
		err = newRealmPolicy(up, tc.hosts).check(realm)
		if (err == nil) != tc.ok {
			t.Errorf("upstream %s, hosts %q, realm %s: err = %v, want ok=%v", tc.upstream, tc.hosts, tc.realm, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrUntrustedRealm) {
			t.Errorf("realm %s: err = %v, want ErrUntrustedRealm", tc.realm, err)
		}
	}
}
