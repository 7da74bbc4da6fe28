package function_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/clustertest"
)

// loadFromEnv replaces *cfg with what config.Load reads from an
// environment holding cfg's upstream, robot and signing key, and
// clustersFile: the configuration as the binary starts with it.
func loadFromEnv(t *testing.T, cfg *config.Config, clustersFile string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); strings.HasPrefix(name, config.Prefix+"_") || name == "PORT" {
			t.Setenv(name, "")
			os.Unsetenv(name)
		}
	}
	t.Setenv("QCI_UPSTREAM_URL", cfg.UpstreamURL)
	t.Setenv("QCI_ROBOT_USERNAME", string(cfg.RobotUsername))
	t.Setenv("QCI_ROBOT_PASSWORD", string(cfg.RobotPassword))
	t.Setenv("QCI_SIGNING_KEY", string(cfg.SigningKey))
	t.Setenv("QCI_CLUSTERS_FILE", clustersFile)
	loaded, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	loaded.Logger = cfg.Logger
	*cfg = loaded
}

// TestClustersFileReadOnceAtStart: the function is built from the clusters
// file as config.Load read and validated it. A ConfigMap updated between
// the validation and the build (here: the file then names another cluster)
// cannot make New build clusters that start-up did not validate.
func TestClustersFileReadOnceAtStart(t *testing.T) {
	var a, b *clustertest.Server
	e := newEnv(t, envOptions{noCluster: true, configure: func(cfg *config.Config) {
		dir := t.TempDir()
		kubeconfigs := map[string]string{}
		for name, s := range map[string]**clustertest.Server{"a": &a, "b": &b} {
			var err error
			if *s, err = clustertest.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup((*s).Close)
			(*s).AddToken(aliceToken, clustertest.User{Name: "alice"})
			(*s).Allow("alice")
			sub := filepath.Join(dir, name)
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			if kubeconfigs[name], err = (*s).WriteKubeconfig(sub); err != nil {
				t.Fatal(err)
			}
		}
		naming := func(name string) []byte {
			return []byte("clusters:\n- name: " + name + "\n  kubeconfig: " + kubeconfigs[name] + "\n  opaqueTokens: true\n")
		}
		clusters := filepath.Join(dir, "clusters.yaml")
		if err := os.WriteFile(clusters, naming("a"), 0o600); err != nil {
			t.Fatal(err)
		}
		loadFromEnv(t, cfg, clusters)
		// The ConfigMap changes after start-up validated it.
		if err := os.WriteFile(clusters, naming("b"), 0o600); err != nil {
			t.Fatal(err)
		}
	}})
	resp, ans, body := e.login("alice", aliceToken, pullScope)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	if c := claimsOf(t, ans.Token); c["qci_cluster"] != "a" {
		t.Errorf("access token claims %v: want cluster a, the one start-up validated", c)
	}
	if len(a.TokenReviews()) != 1 || len(b.TokenReviews()) != 0 {
		t.Errorf("TokenReviews: a %d, b %d; want 1 at a, the validated file's cluster, and none at b", len(a.TokenReviews()), len(b.TokenReviews()))
	}
}

// TestClustersFileRemovedAfterLoad: a clusters file gone after Load (a
// ConfigMap unmounted or replaced) is not read again by New, which builds
// what Load validated.
func TestClustersFileRemovedAfterLoad(t *testing.T) {
	e := newEnv(t, envOptions{configure: func(cfg *config.Config) {
		clusters := filepath.Join(t.TempDir(), "clusters.yaml")
		if err := os.WriteFile(clusters, []byte("clusters:\n- name: only\n  kubeconfig: "+cfg.Kubeconfig+"\n  opaqueTokens: true\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		loadFromEnv(t, cfg, clusters)
		if err := os.Remove(clusters); err != nil {
			t.Fatal(err)
		}
	}})
	resp, ans, body := e.login("alice", aliceToken, pullScope)
	if resp.StatusCode != 200 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	if c := claimsOf(t, ans.Token); c["qci_cluster"] != "only" {
		t.Errorf("access token claims %v: want cluster only", c)
	}
}

// TestNewListsEveryProblemOnce: New of a configuration built by hand
// reports bad open images and a bad failed-login limit in the one
// message of config.Validate, each entry once, and builds nothing.
func TestNewListsEveryProblemOnce(t *testing.T) {
	cfg := config.Defaults()
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	cfg.SigningKey = "0123456789abcdef0123456789abcdef"
	cfg.OpenImages = []string{"ci", "", "a/b/c", "ci/a_b", "Ocp", "ocp/release"}
	cfg.LoginRate = 0
	cfg.LoginBurst = 0
	h, err := function.New(cfg)
	var ce *config.Error
	if !errors.As(err, &ce) || h != nil {
		t.Fatalf("New: %v, %v; want a *config.Error and no handler", h, err)
	}
	want := []string{
		`QCI_OPEN_IMAGES: "" is neither a namespace nor <namespace>/<image stream> (a name without "_")`,
		`QCI_OPEN_IMAGES: "a/b/c" is neither a namespace nor <namespace>/<image stream> (a name without "_")`,
		`QCI_OPEN_IMAGES: "ci/a_b" is neither a namespace nor <namespace>/<image stream> (a name without "_")`,
		`QCI_OPEN_IMAGES: "Ocp" is neither a namespace nor <namespace>/<image stream> (a name without "_")`,
		"QCI_LOGIN_RATE must be a positive number of failed logins a second",
		"QCI_LOGIN_BURST must be a whole number of at least 1",
	}
	if !slices.Equal(ce.Problems, want) {
		t.Errorf("problems\n%s\nwant\n%s", strings.Join(ce.Problems, "\n"), strings.Join(want, "\n"))
	}
	if want := "invalid configuration: " + strings.Join(want, "; "); err.Error() != want {
		t.Errorf("message %q\nwant %q", err, want)
	}
}
