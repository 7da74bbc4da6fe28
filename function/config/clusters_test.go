package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/config"
)

func writeClusters(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "clusters.yaml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "KUBECONFIG", kc)), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadClustersFile(t *testing.T) {
	setValid(t)
	path := writeClusters(t, "clusters:\n- name: a\n  kubeconfig: KUBECONFIG\n  opaqueTokens: true\n- name: b\n  kubeconfig: KUBECONFIG\n")
	t.Setenv("QCI_CLUSTERS_FILE", path)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	if c.ClustersFile != path {
		t.Errorf("ClustersFile %q", c.ClustersFile)
	}
	if !strings.Contains(c.String(), "clusters_file="+path) {
		t.Errorf("String() %s does not show the clusters file", c)
	}
}

// The file's problems and the conflict with the single-cluster variables
// come in the one start-up message, beside every other problem.
func TestClustersFileProblemsInTheOneMessage(t *testing.T) {
	setValid(t)
	path := writeClusters(t, "clusters:\n- name: a\n  kubeconfig: KUBECONFIG\n  opaqueTokens: true\n- name: a\n  inCluster: true\n  opaqueTokens: true\n")
	t.Setenv("QCI_CLUSTERS_FILE", path)
	t.Setenv("QCI_KUBECONFIG", path)
	t.Setenv("QCI_AUTHZ_NAMESPACE", "ci")
	t.Setenv("QCI_TOKEN_AUDIENCES", "https://registry.ci.example.com")
	t.Setenv("QCI_TOKEN_TTL", "10s")
	_, err := config.Load()
	var ce *config.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v", err)
	}
	want := []string{
		"QCI_TOKEN_TTL 10s is shorter than 1m0s",
		"QCI_CLUSTERS_FILE and QCI_KUBECONFIG, QCI_AUTHZ_NAMESPACE, QCI_TOKEN_AUDIENCES are both set: the clusters file names each cluster's kubeconfig, namespace and audiences; set one",
		"QCI_CLUSTERS_FILE " + path + `: cluster 2 ("a"): name "a" is also cluster 1's`,
		"QCI_CLUSTERS_FILE " + path + `: at most one cluster may accept opaque tokens (opaqueTokens: true): cluster 1 ("a"), cluster 2 ("a")`,
	}
	if !slices.Equal(ce.Problems, want) {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(ce.Problems, "\n"), strings.Join(want, "\n"))
	}
}

func TestClustersFileMissing(t *testing.T) {
	setValid(t)
	t.Setenv("QCI_CLUSTERS_FILE", "/nonexistent/clusters.yaml")
	_, err := config.Load()
	if err == nil || !strings.Contains(err.Error(), "QCI_CLUSTERS_FILE /nonexistent/clusters.yaml: open /nonexistent/clusters.yaml: no such file or directory") {
		t.Errorf("error %v", err)
	}
}

// TestClustersFileReadOnce: Load reads the clusters file, and Parse of
// what Load returned (as function.New does) uses what Load read: the file
// renamed its cluster or gone since makes no difference. Another path, or
// a configuration built by hand, is read.
func TestClustersFileReadOnce(t *testing.T) {
	setValid(t)
	path := writeClusters(t, "clusters:\n- name: a\n  kubeconfig: KUBECONFIG\n")
	t.Setenv("QCI_CLUSTERS_FILE", path)
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	namesOf := func(c config.Config) []string {
		t.Helper()
		p, err := c.Parse()
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		var names []string
		for _, cl := range p.Clusters.Clusters {
			names = append(names, cl.Name)
		}
		return names
	}
	if err := os.WriteFile(path, []byte("clusters:\n- name: b\n  inCluster: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := namesOf(c); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Parse after Load, the file since changed: clusters %q, want Load's [a]", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := namesOf(c); !slices.Equal(got, []string{"a"}) {
		t.Errorf("Parse after Load, the file since removed: clusters %q, want Load's [a]", got)
	}

	other := writeClusters(t, "clusters:\n- name: c\n  inCluster: true\n")
	c.ClustersFile = other
	if got := namesOf(c); !slices.Equal(got, []string{"c"}) {
		t.Errorf("Parse of another path: clusters %q, want its [c]", got)
	}
	byHand := config.Defaults()
	byHand.RobotUsername, byHand.RobotPassword, byHand.SigningKey = "u", "p", key
	byHand.ClustersFile = other
	if got := namesOf(byHand); !slices.Equal(got, []string{"c"}) {
		t.Errorf("Parse of a configuration built by hand: clusters %q, want the file's [c]", got)
	}
	byHand.ClustersFile = path // removed: read, and its problem reported
	if err := byHand.Validate(); err == nil || !strings.Contains(err.Error(), "QCI_CLUSTERS_FILE "+path+": open ") {
		t.Errorf("Validate of a removed clusters file: %v", err)
	}
}
