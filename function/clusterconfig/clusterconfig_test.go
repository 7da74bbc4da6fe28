package clusterconfig

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseTheExample(t *testing.T) {
	data, err := os.ReadFile("../../knative/examples/build-farm/clusters.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &File{Clusters: []Cluster{
		{Name: "app-ci", InCluster: true, OpaqueTokens: true, Issuers: []string{"https://kubernetes.default.svc"},
			Authorization: Authorization{Namespace: "ocp"}},
		{Name: "build01", Kubeconfig: "/etc/qci/build01/kubeconfig", Audiences: []string{"https://registry.ci.example.com"},
			Authorization: Authorization{Namespace: "qci-appci-pull"}},
		{Name: "build02", Kubeconfig: "/etc/qci/build02/kubeconfig", Audiences: []string{"https://registry.ci.example.com"},
			Issuers:       []string{"https://build02.ci.example.com"},
			Authorization: Authorization{Allow: &Allow{Namespaces: []string{"ci"}, ServiceAccounts: []string{"test-credentials/image-puller"}}}},
	}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", f, want)
	}
}

func TestParseDefaultsToTheOcpNamespaceReview(t *testing.T) {
	f, err := Parse([]byte("clusters:\n- name: a\n  kubeconfig: /k\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Clusters[0].Authorization; got.Namespace != "ocp" || got.Allow != nil {
		t.Errorf("authorization %+v, want the namespace review in ocp", got)
	}
}

func TestParseImageStreamsReviewsEachImageStream(t *testing.T) {
	f, err := Parse([]byte(`clusters:
- name: a
  kubeconfig: /k
  authorization: {imageStreams: true}
- name: b
  kubeconfig: /k
  authorization: {imageStreams: true, namespace: ci-pull}
`))
	if err != nil {
		t.Fatal(err)
	}
	// The namespace is the upstream repository's review, ocp by default
	// as QCI_AUTHZ_NAMESPACE's.
	if got, want := f.Clusters[0].Authorization, (Authorization{ImageStreams: true, Namespace: "ocp"}); !reflect.DeepEqual(got, want) {
		t.Errorf("authorization %+v, want %+v", got, want)
	}
	if got, want := f.Clusters[1].Authorization, (Authorization{ImageStreams: true, Namespace: "ci-pull"}); !reflect.DeepEqual(got, want) {
		t.Errorf("authorization %+v, want %+v", got, want)
	}
	_, err = Parse([]byte(`clusters:
- name: a
  kubeconfig: /k
  authorization: {imageStreams: true, allow: {namespaces: [ci]}}
- name: b
  kubeconfig: /k
  authorization: {imageStreams: true, namespace: Not_A_Namespace}
`))
	want := []string{
		`cluster 1 ("a"): authorization: set imageStreams: true (a SubjectAccessReview per image stream) or allow (a list), not both`,
		`cluster 2 ("b"): authorization: namespace "Not_A_Namespace" is not a namespace name`,
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	_, err = Parse([]byte("clusters:\n- name: a\n  kubeconfig: /k\n  authorization: {imageStreams: yes-please}\n"))
	if p := problems(t, err); len(p) != 1 || !strings.HasPrefix(p[0], "not a valid clusters file: ") {
		t.Errorf("imageStreams not a boolean: problems %q", p)
	}
}

func problems(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	return e.Problems
}

func TestParseListsEveryProblem(t *testing.T) {
	const file = `
clusters:
- name: App_CI
  kubeconfig: /k
  inCluster: true
  audiences: [""]
  issuers: [https://a, https://a]
  opaqueTokens: true
  authorization: {namespace: ocp, allow: {namespaces: [ci]}}
- kubeconfig: /k
  issuers: [https://a, " "]
  opaqueTokens: true
  authorization: {allow: {}}
- name: b
  authorization: {namespace: Not_A_Namespace}
- name: b
  inCluster: true
  authorization: {allow: {serviceAccounts: [ci, ci/puller, "ci/", /x], namespaces: [CI]}}
- name: c
  inCluster: true
`
	_, err := Parse([]byte(file))
	want := []string{
		`cluster 1 ("App_CI"): name "App_CI" must be a DNS label: lowercase letters, digits and '-', at most 63`,
		`cluster 1 ("App_CI"): set kubeconfig or inCluster: true, not both`,
		`cluster 1 ("App_CI"): audiences holds an empty audience`,
		`cluster 1 ("App_CI"): issuer "https://a" is listed twice`,
		`cluster 1 ("App_CI"): authorization: set namespace (a SubjectAccessReview) or allow (a list), not both`,
		`cluster 2: name is required`,
		`cluster 2: issuer "https://a" is also cluster 1's: a token must name one cluster`,
		`cluster 2: issuers holds an empty issuer`,
		`cluster 2: authorization: allow lists no service accounts and no namespaces: nobody could pull`,
		`cluster 3 ("b"): set kubeconfig (a file path) or inCluster: true`,
		`cluster 3 ("b"): authorization: namespace "Not_A_Namespace" is not a namespace name`,
		`cluster 4 ("b"): name "b" is also cluster 3's`,
		`cluster 4 ("b"): authorization: allow.serviceAccounts: "ci" is not namespace/name`,
		`cluster 4 ("b"): authorization: allow.serviceAccounts: "ci/" is not namespace/name`,
		`cluster 4 ("b"): authorization: allow.serviceAccounts: "/x" is not namespace/name`,
		`cluster 4 ("b"): authorization: allow.namespaces: "CI" is not a namespace name`,
		`only one cluster can be the one the function runs in (inCluster: true): cluster 4 ("b"), cluster 5 ("c")`,
		`at most one cluster may accept opaque tokens (opaqueTokens: true): cluster 1 ("App_CI"), cluster 2`,
	}
	got := problems(t, err)
	if !slices.Equal(got, want) {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(err.Error(), "clusters file: "+want[0]+"; ") {
		t.Errorf("message %q does not list the problems in one line", err)
	}
}

func TestParseRefusesWhatItDoesNotKnow(t *testing.T) {
	for name, file := range map[string]string{
		"a typo":        "clusters:\n- name: a\n  kubeconfig: /k\n  audience: [x]\n",
		"a repeat":      "clusters:\n- name: a\n  name: b\n  kubeconfig: /k\n",
		"not YAML":      "clusters: [",
		"a scalar list": "clusters: a\n",
	} {
		_, err := Parse([]byte(file))
		if p := problems(t, err); len(p) != 1 || !strings.HasPrefix(p[0], "not a valid clusters file: ") {
			t.Errorf("%s: problems %q", name, p)
		}
	}
	if p := problems(t, func() error { _, err := Parse([]byte("clusters: []\n")); return err }()); !slices.Equal(p,
		[]string{"lists no clusters: set clusters: [{name: …, kubeconfig: …}]"}) {
		t.Errorf("empty file: %q", p)
	}
}

func TestLoadChecksTheKubeconfigs(t *testing.T) {
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "clusters.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("clusters:\n- name: a\n  kubeconfig: " + kc + "\n- name: b\n  inCluster: true\n")
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Clusters) != 2 || f.Clusters[0].Kubeconfig != kc {
		t.Errorf("loaded %+v", f)
	}
	write("clusters:\n- name: a\n  kubeconfig: " + dir + "/missing\n- name: a\n  inCluster: true\n")
	_, err = Load(path)
	want := []string{
		`cluster 2 ("a"): name "a" is also cluster 1's`,
		`cluster 1 ("a"): kubeconfig: stat ` + dir + `/missing: no such file or directory`,
	}
	if got := problems(t, err); !slices.Equal(got, want) {
		t.Errorf("problems %q, want %q", got, want)
	}
	_, err = Load(dir + "/none.yaml")
	if got := problems(t, err); len(got) != 1 || !strings.Contains(got[0], "none.yaml: no such file") {
		t.Errorf("missing file: %q", got)
	}
}

func TestAllowed(t *testing.T) {
	a := &Allow{Namespaces: []string{"ci"}, ServiceAccounts: []string{"test-credentials/image-puller"}}
	for user, want := range map[string]bool{
		"system:serviceaccount:ci:builder":                      true,
		"system:serviceaccount:test-credentials:image-puller":   true,
		"system:serviceaccount:test-credentials:other":          false,
		"system:serviceaccount:cia:builder":                     false,
		"system:serviceaccount:ci":                              false,
		"system:serviceaccount:ci:":                             false,
		"system:serviceaccount:ci:a:b":                          false,
		"ci/builder":                                            false,
		"test-credentials/image-puller":                         false,
		"system:serviceaccounts:ci":                             false,
		"system:serviceaccount::image-puller":                   false,
		"prefix-system:serviceaccount:ci:builder":               false,
		"system:serviceaccount:test-credentials/image-puller:x": false,
	} {
		if got := a.Allowed(user); got != want {
			t.Errorf("Allowed(%q) = %v, want %v", user, got, want)
		}
	}
}
