package kubee2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/qci-appci/qci-appci/test/clienttools"
)

// setupImageStreamRBAC grants, as app.ci's RBAC would: the service account
// ci/stream-puller get imagestreams/layers on the image stream ci-operator
// of namespace ci only (resourceNames), and the group of the static user
// every image stream of namespace team-a.
func setupImageStreamRBAC(t *testing.T, ctx context.Context) {
	t.Helper()
	cs := admin(t)
	for _, ns := range []string{"ci", "ocp-private", "team-a"} {
		noErr(t, created(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})))
	}
	noErr(t, created(cs.CoreV1().ServiceAccounts("ci").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "stream-puller"}}, metav1.CreateOptions{})))
	noErr(t, created(cs.RbacV1().Roles("ci").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pull-ci-operator"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams/layers"},
			ResourceNames: []string{"ci-operator"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})))
	noErr(t, created(cs.RbacV1().RoleBindings("ci").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "stream-puller-pulls-ci-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pull-ci-operator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "stream-puller", Namespace: "ci"}},
	}, metav1.CreateOptions{})))
	noErr(t, created(cs.RbacV1().Roles("team-a").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "image-puller"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams/layers"}, Verbs: []string{"get"}}},
	}, metav1.CreateOptions{})))
	noErr(t, created(cs.RbacV1().RoleBindings("team-a").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "group-pulls"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "image-puller"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: pullGroup}},
	}, metav1.CreateOptions{})))
}

// loginFor answers the status and body of a GET /v2/auth asking pull on
// repository.
func (s *setup) loginFor(t *testing.T, user, pass, repository string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.proxy.URL+"/v2/auth?scope=repository:"+repository+":pull", nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPullByImageStreamWithRBAC: against a real kube-apiserver's RBAC, a
// service account allowed on ci/ci-operator by resourceNames pulls it with
// podman and skopeo, and is refused ocp-private/secret and ci/other; a
// user whose group is bound in team-a pulls every image stream there; a
// refresh after the binding is removed is refused.
func TestPullByImageStreamWithRBAC(t *testing.T) {
	needCluster(t)
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	setupImageStreamRBAC(t, ctx)
	s := start(t, ctx, nil)
	for _, tg := range []string{"ocp-private_secret_latest", "ci_other_latest", "team-a_x_latest", "team-a_y_v1"} {
		if _, err := s.reg.PushRandomImage(ctx, tg, 1, 4<<10); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := cluster.ServiceAccountToken(ctx, "ci", "stream-puller", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	pm := clienttools.NewPodman(t)
	if out, err := pm.Run(ctx, "login", "--authfile", pm.Authfile, "--tls-verify=false", "-u", "stream-puller", "-p", sa, s.proxy.Host); err != nil {
		t.Fatalf("podman login: %v\n%s", err, out)
	}
	if out, err := pm.Run(ctx, "pull", "--authfile", pm.Authfile, "--tls-verify=false", s.proxy.Host+"/ci/ci-operator:latest"); err != nil {
		t.Fatalf("podman pull ci/ci-operator:latest: %v\n%s", err, out)
	}
	for _, ref := range []string{"ocp-private/secret:latest", "ci/other:latest", repo + ":" + tag} {
		out, err := pm.Run(ctx, "pull", "--authfile", pm.Authfile, "--tls-verify=false", s.proxy.Host+"/"+ref)
		if err == nil || !strings.Contains(out, "403") {
			t.Errorf("podman pull %s: %v\n%s; want 403", ref, err, out)
		}
	}
	if out, err := clienttools.Run(ctx, skopeo, "inspect", "--tls-verify=false", "--creds", "stream-puller:"+sa,
		"docker://"+s.proxy.Host+"/ci/ci-operator:latest"); err != nil {
		t.Errorf("skopeo inspect ci/ci-operator:latest: %v\n%s", err, out)
	}
	out, err := clienttools.Run(ctx, skopeo, "inspect", "--tls-verify=false", "--creds", "stream-puller:"+sa,
		"docker://"+s.proxy.Host+"/ocp-private/secret:latest")
	if err == nil || !strings.Contains(out, "403") {
		t.Errorf("skopeo inspect ocp-private/secret:latest: %v\n%s; want 403", err, out)
	}
	if code, body := s.loginFor(t, "stream-puller", sa, "ocp-private/secret"); code != http.StatusForbidden ||
		!strings.Contains(body, "imagestreams/layers secret (group image.openshift.io) in namespace ocp-private") {
		t.Errorf("token for ocp-private/secret: %d %s", code, body)
	}

	for _, ref := range []string{"team-a/x:latest", "team-a/y:v1"} {
		if out, err := clienttools.Run(ctx, skopeo, "inspect", "--tls-verify=false", "--creds", groupedUser+":"+groupedToken,
			"docker://"+s.proxy.Host+"/"+ref); err != nil {
			t.Errorf("group member, skopeo inspect %s: %v\n%s", ref, err, out)
		}
	}
	if code, _ := s.loginFor(t, groupedUser, groupedToken, "ci/ci-operator"); code != http.StatusForbidden {
		t.Errorf("group member on ci/ci-operator: %d, want 403", code)
	}

	// A refresh asks the review again: with the binding gone, 403.
	refresh := s.refresher(t, "stream-puller", sa, "repository:ci/ci-operator:pull")
	if code := refresh(); code != 200 {
		t.Fatalf("refresh while allowed: %d", code)
	}
	if err := admin(t).RbacV1().RoleBindings("ci").Delete(ctx, "stream-puller-pulls-ci-operator", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// the tests share one cluster: put the binding back for a rerun
		setupImageStreamRBAC(t, context.Background())
	})
	eventually(t, "a refresh after the image stream's binding was removed is refused", func() bool { return refresh() == http.StatusForbidden })
}
