// Package kubee2e proves cluster-token login against a real kube-apiserver
// with etcd: the RBAC of knative/rbac.yaml applied as is, service account
// and static users, audience-bound tokens, and an API server that stops and
// comes back. The real cmd/qci-appci binary runs as a separate process.
package kubee2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/test/kubecluster"
)

var (
	cluster  *kubecluster.Cluster
	binary   string
	setupErr error
)

// groupedToken is a static token file user whose pull access comes only
// from its group.
const (
	groupedToken = "grouped-user-static-token"
	groupedUser  = "grouped-user"
	pullGroup    = "ci-pullers"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qci-kube-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "qci-appci")
	if out, err := exec.Command("go", "build", "-o", binary, "github.com/qci-appci/qci-appci/cmd/qci-appci").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cmd/qci-appci: %v\n%s", err, out)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cluster, setupErr = kubecluster.Start(ctx, dir, kubecluster.Options{Users: []kubecluster.StaticUser{
		{Token: groupedToken, Name: groupedUser, UID: "uid-grouped", Groups: []string{pullGroup}},
	}})
	cancel()
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	if code != 0 {
		if b, err := os.ReadFile(filepath.Join(dir, "cluster.log")); err == nil && len(b) > 0 {
			tail := b[max(0, len(b)-4000):]
			fmt.Fprintf(os.Stderr, "--- cluster log (tail) ---\n%s\n", tail)
		}
	}
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// needCluster fails under CI=true and skips elsewhere when the cluster
// could not start (etcd or the kube-apiserver binary missing).
func needCluster(t *testing.T) {
	t.Helper()
	if setupErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no Kubernetes API server: %v", setupErr)
	}
	t.Skipf("no Kubernetes API server: %v", setupErr)
}

func TestSmoke(t *testing.T) {
	needCluster(t)
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server %s", v.GitVersion)
}
