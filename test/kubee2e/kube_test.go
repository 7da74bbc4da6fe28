package kubee2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/qci-appci/qci-appci/test/clienttools"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

const (
	repo      = "openshift/ci"
	tag       = "ci_ci-operator_latest"
	robotUser = "openshift+ci_robot"
	robotPass = "robot-password-upstream"
	exposed   = "https://registry.ci.example.com"
)

func admin(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := cluster.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// created drops the object of a Create and an AlreadyExists error: the
// tests share one cluster and set up the same objects.
func created[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// applyDeployRBAC creates the objects of knative/rbac.yaml, as they are.
func applyDeployRBAC(t *testing.T, ctx context.Context) *rbacv1.ClusterRoleBinding {
	t.Helper()
	cs := admin(t)
	b, err := os.ReadFile("../../knative/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crb *rbacv1.ClusterRoleBinding
	for _, doc := range bytes.Split(b, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.Kind {
		case "ServiceAccount":
			var sa corev1.ServiceAccount
			if err := yaml.UnmarshalStrict(doc, &sa); err != nil {
				t.Fatal(err)
			}
			noErr(t, created(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: sa.Namespace}}, metav1.CreateOptions{})))
			noErr(t, created(cs.CoreV1().ServiceAccounts(sa.Namespace).Create(ctx, &sa, metav1.CreateOptions{})))
		case "ClusterRoleBinding":
			crb = &rbacv1.ClusterRoleBinding{}
			if err := yaml.UnmarshalStrict(doc, crb); err != nil {
				t.Fatal(err)
			}
			noErr(t, created(cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})))
		}
	}
	if crb == nil {
		t.Fatal("rbac.yaml has no ClusterRoleBinding")
	}
	return crb
}

// setupUsers makes the pull Role in ocp, a service account bound to it, one
// that is not, and a binding for the group of the static user.
func setupUsers(t *testing.T, ctx context.Context) {
	t.Helper()
	cs := admin(t)
	for _, ns := range []string{"ocp", "ci"} {
		noErr(t, created(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})))
	}
	for _, sa := range []string{"puller", "nopull", "leaver", "refresher"} {
		noErr(t, created(cs.CoreV1().ServiceAccounts("ci").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})))
	}
	noErr(t, created(cs.RbacV1().Roles("ocp").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "image-puller"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams/layers"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})))
	bind := func(name string, subject rbacv1.Subject) {
		noErr(t, created(cs.RbacV1().RoleBindings("ocp").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "image-puller"},
			Subjects:   []rbacv1.Subject{subject},
		}, metav1.CreateOptions{})))
	}
	for _, sa := range []string{"puller", "leaver", "refresher"} {
		bind(sa+"-pulls", rbacv1.Subject{Kind: "ServiceAccount", Name: sa, Namespace: "ci"})
	}
	bind("group-pulls", rbacv1.Subject{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: pullGroup})
}

type setup struct {
	reg   *registrytest.Registry
	proxy *proxyproc.Process
}

// start runs an upstream and the real binary whose kubeconfig holds a
// token of the deploy's service account.
func start(t *testing.T, ctx context.Context, env map[string]string) *setup {
	t.Helper()
	saToken, err := cluster.ServiceAccountToken(ctx, "qci", "qci-appci", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := cluster.WriteKubeconfig(kc, saToken); err != nil {
		t.Fatal(err)
	}
	full := map[string]string{"QCI_KUBECONFIG": kc}
	for k, v := range env {
		full[k] = v
	}
	return startWithEnv(t, ctx, full)
}

// refresher logs user in with a password grant for scope and returns a
// function that answers the status of a refresh with the refresh token
// it got.
func (s *setup) refresher(t *testing.T, user, password, scope string) (refresh func() int) {
	t.Helper()
	resp, err := http.PostForm(s.proxy.URL+"/v2/auth", url.Values{"grant_type": {"password"}, "username": {user},
		"password": {password}, "scope": {scope}})
	if err != nil {
		t.Fatal(err)
	}
	var ans struct {
		RefreshToken string `json:"refresh_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&ans)
	resp.Body.Close()
	if resp.StatusCode != 200 || ans.RefreshToken == "" {
		t.Fatalf("password grant: %d", resp.StatusCode)
	}
	return func() int {
		resp, err := http.PostForm(s.proxy.URL+"/v2/auth", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken},
			"scope": {scope}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}

// login answers the status of a GET /v2/auth with Basic credentials.
func (s *setup) login(t *testing.T, user, pass string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.proxy.URL+"/v2/auth?scope=repository:"+repo+":pull", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// eventually polls check until it is true (RBAC changes reach the API
// server's authorizer through an informer).
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClusterLoginsWithTheDeployRBAC(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	crb := applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	s := start(t, ctx, nil)

	puller, err := cluster.ServiceAccountToken(ctx, "ci", "puller", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	nopull, err := cluster.ServiceAccountToken(ctx, "ci", "nopull", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := s.login(t, "puller", puller); code != 200 {
		t.Errorf("allowed service account: %d", code)
	}
	if code, _ := s.login(t, "nopull", nopull); code != http.StatusForbidden {
		t.Errorf("service account without the Role: %d, want 403", code)
	}
	if code, _ := s.login(t, groupedUser, groupedToken); code != 200 {
		t.Errorf("user allowed through its group: %d", code)
	}
	if code, _ := s.login(t, "x", "not-a-cluster-token"); code != http.StatusUnauthorized {
		t.Errorf("garbage token: %d, want 401", code)
	}
	podmanPull(t, ctx, s, "puller", puller, true)
	podmanPull(t, ctx, s, "nopull", nopull, false)

	// Without the binding, the function's own reviews are forbidden: 503
	// and a log naming system:auth-delegator; the robot still logs in.
	if err := admin(t).RbacV1().ClusterRoleBindings().Delete(ctx, crb.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cluster logins answer 503 without system:auth-delegator", func() bool {
		code, h := s.login(t, groupedUser, groupedToken)
		return code == http.StatusServiceUnavailable && h.Get("Retry-After") != ""
	})
	// The process's output reaches the test through a pipe, after the answer.
	eventually(t, "the log says the service account lacks system:auth-delegator", func() bool {
		return strings.Contains(s.proxy.Logs(), "lacks system:auth-delegator")
	})
	if code, _ := s.login(t, robotUser, robotPass); code != 200 {
		t.Errorf("robot login without the binding: %d", code)
	}
	applyDeployRBAC(t, ctx)
	eventually(t, "cluster logins work again", func() bool {
		code, _ := s.login(t, groupedUser, groupedToken)
		return code == 200
	})
}

// podmanPull logs in and pulls with podman, or checks that a denied user's
// pull fails with a 403.
func podmanPull(t *testing.T, ctx context.Context, s *setup, user, token string, allowed bool) {
	t.Helper()
	pm := clienttools.NewPodman(t)
	// podman login names no repository: a valid cluster token is enough,
	// and a denial shows at the pull.
	out, err := pm.Run(ctx, "login", "--authfile", pm.Authfile, "--tls-verify=false", "-u", user, "-p", token, s.proxy.Host)
	if err != nil {
		t.Fatalf("%s: podman login: %v\n%s", user, err, out)
	}
	out, err = pm.Run(ctx, "pull", "--authfile", pm.Authfile, "--tls-verify=false", s.proxy.Host+"/"+repo+":"+tag)
	if !allowed {
		if err == nil || !strings.Contains(string(out), "403") {
			t.Errorf("%s: podman pull should fail with 403: %v\n%s", user, err, out)
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: podman pull: %v\n%s", user, err, out)
	}
}

func TestAudienceBoundTokens(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	s := start(t, ctx, map[string]string{"QCI_TOKEN_AUDIENCES": exposed})
	bound, err := cluster.ServiceAccountToken(ctx, "ci", "puller", []string{exposed}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := s.login(t, "puller", bound); code != 200 {
		t.Errorf("token bound to %s: %d", exposed, code)
	}
	plain, err := cluster.ServiceAccountToken(ctx, "ci", "puller", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := s.login(t, "puller", plain); code != http.StatusUnauthorized {
		t.Errorf("the same account's default-audience token: %d, want 401", code)
	}
}

func TestRevocation(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	s := start(t, ctx, nil)
	cs := admin(t)

	// A deleted service account's token stops working once the review
	// cache (QCI_REVIEW_CACHE_TTL=1s here) has expired.
	leaver, err := cluster.ServiceAccountToken(ctx, "ci", "leaver", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := s.login(t, "leaver", leaver); code != 200 {
		t.Fatalf("leaver: %d", code)
	}
	if err := cs.CoreV1().ServiceAccounts("ci").Delete(ctx, "leaver", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a deleted service account's token is refused", func() bool {
		code, _ := s.login(t, "leaver", leaver)
		return code == http.StatusUnauthorized
	})

	// A refresh by a user whose binding was removed is refused.
	refresher, err := cluster.ServiceAccountToken(ctx, "ci", "refresher", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	refresh := s.refresher(t, "refresher", refresher, "repository:"+repo+":pull")
	if code := refresh(); code != 200 {
		t.Fatalf("refresh while allowed: %d", code)
	}
	if err := cs.RbacV1().RoleBindings("ocp").Delete(ctx, "refresher-pulls", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a refresh after the binding was removed is refused", func() bool { return refresh() == http.StatusForbidden })
}

func TestAPIServerOutage(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	s := start(t, ctx, nil)
	if code, _ := s.login(t, groupedUser, groupedToken); code != 200 {
		t.Fatalf("before: %d", code)
	}
	if err := cluster.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	// Fresh answers only: the cached allowed review lasts 1 s here.
	eventually(t, "cluster logins answer 503 with the API server down", func() bool {
		code, h := s.login(t, groupedUser, groupedToken)
		return code == http.StatusServiceUnavailable && h.Get("Retry-After") != ""
	})
	if code, _ := s.login(t, robotUser, robotPass); code != 200 {
		t.Errorf("robot login with the API server down: %d", code)
	}
	if err := cluster.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cluster logins recover without restarting the function", func() bool {
		code, _ := s.login(t, groupedUser, groupedToken)
		return code == 200
	})
}
