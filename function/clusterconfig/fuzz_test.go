package clusterconfig

import (
	"regexp"
	"testing"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// FuzzParse: no input makes Parse panic, and a file it accepts keeps the
// rules the router relies on: unique DNS-label names, at most one cluster
// for opaque tokens and one in-cluster, no issuer claimed twice, and
// exactly one way to reach each cluster.
func FuzzParse(f *testing.F) {
	f.Add([]byte("clusters:\n- name: app-ci\n  inCluster: true\n  opaqueTokens: true\n- name: build01\n  kubeconfig: /k\n  issuers: [https://b]\n  authorization: {imageStreams: true}\n"))
	f.Add([]byte("clusters:\n- name: a\n  kubeconfig: /k\n  authorization:\n    allow: {serviceAccounts: [ci/puller], namespaces: [ci]}\n"))
	f.Add([]byte("clusters: []"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		names, issuers := map[string]bool{}, map[string]bool{}
		opaque, inCluster := 0, 0
		for _, c := range file.Clusters {
			if !dnsLabel.MatchString(c.Name) || len(c.Name) > 63 || names[c.Name] {
				t.Fatalf("accepted name %q (seen %v)", c.Name, names[c.Name])
			}
			names[c.Name] = true
			if (c.Kubeconfig == "") == !c.InCluster {
				t.Fatalf("cluster %q: kubeconfig %q and inCluster %v", c.Name, c.Kubeconfig, c.InCluster)
			}
			if c.OpaqueTokens {
				opaque++
			}
			if c.InCluster {
				inCluster++
			}
			for _, iss := range c.Issuers {
				if iss == "" || issuers[iss] {
					t.Fatalf("issuer %q empty or claimed twice", iss)
				}
				issuers[iss] = true
			}
			if c.Authorization.ImageStreams && c.Authorization.Allow != nil {
				t.Fatalf("cluster %q: imageStreams with an allow list", c.Name)
			}
		}
		if opaque > 1 || inCluster > 1 {
			t.Fatalf("%d opaque-token and %d in-cluster clusters accepted", opaque, inCluster)
		}
	})
}
