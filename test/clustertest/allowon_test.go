package clustertest_test

import "testing"

// TestAllowOn: a grant on one image stream allows reviews of that name in
// that namespace only, not of the whole namespace; a namespace-wide grant
// (name "") allows every name; group grants go by spec.groups.
func TestAllowOn(t *testing.T) {
	s, cfg := start(t)
	c := accessReviews(t, cfg)
	s.AllowOn("alice", "ci", "ci-operator")
	s.AllowGroupOn("team-a", "team-a-ns", "")

	named := func(user string, groups []string, ns, name string) bool {
		sar := pull(user, groups, ns)
		sar.Spec.ResourceAttributes.Name = name
		return access(t, c, sar).Allowed
	}
	for _, tc := range []struct {
		user   string
		groups []string
		ns     string
		name   string
		want   bool
	}{
		{"alice", nil, "ci", "ci-operator", true},
		{"alice", nil, "ci", "other", false},
		{"alice", nil, "ci", "", false}, // the whole namespace
		{"alice", nil, "ocp-private", "ci-operator", false},
		{"bob", nil, "ci", "ci-operator", false},
		{"carol", []string{"team-a"}, "team-a-ns", "anything", true},
		{"carol", []string{"team-a"}, "team-a-ns", "", true},
		{"carol", []string{"team-b"}, "team-a-ns", "anything", false},
		{"carol", []string{"team-a"}, "ci", "ci-operator", false},
	} {
		if got := named(tc.user, tc.groups, tc.ns, tc.name); got != tc.want {
			t.Errorf("%s %v on %s/%q: allowed %v, want %v", tc.user, tc.groups, tc.ns, tc.name, got, tc.want)
		}
	}
	s.RevokeOn("alice", "ci", "ci-operator")
	if named("alice", nil, "ci", "ci-operator") {
		t.Error("RevokeOn did not revoke")
	}
}
