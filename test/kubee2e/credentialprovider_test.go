package kubee2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"

	"github.com/qci-appci/qci-appci/test/clienttools"
)

// buildProvider builds cmd/qci-credential-provider into a temp dir.
func buildProvider(t *testing.T, ctx context.Context) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "qci-credential-provider")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/qci-appci/qci-appci/cmd/qci-credential-provider").CombinedOutput(); err != nil {
		t.Fatalf("building cmd/qci-credential-provider: %v\n%s", err, out)
	}
	return bin
}

// kubeletRequest makes what a kubelet has when it pulls image for a pod of
// the service account ci/sa: the pod, the token it asks for it
// (tokenAttributes.serviceAccountTokenAudience = the function, bound to
// the pod, 10 minutes), and the CredentialProviderRequest it sends.
func kubeletRequest(t *testing.T, ctx context.Context, cs kubernetes.Interface, sa, image string) (*corev1.Pod, *authenticationv1.TokenRequest, credentialproviderv1.CredentialProviderRequest) {
	t.Helper()
	pod, err := cs.CoreV1().Pods("ci").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "build-"},
		Spec: corev1.PodSpec{ServiceAccountName: sa,
			Containers: []corev1.Container{{Name: "build", Image: image}}},
	}, metav1.CreateOptions{})
	noErr(t, err)
	ttl := int64(600)
	tr, err := cs.CoreV1().ServiceAccounts("ci").CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{exposed}, ExpirationSeconds: &ttl,
			BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
	}, metav1.CreateOptions{})
	noErr(t, err)
	return pod, tr, credentialproviderv1.CredentialProviderRequest{
		TypeMeta:                  metav1.TypeMeta{APIVersion: "credentialprovider.kubelet.k8s.io/v1", Kind: "CredentialProviderRequest"},
		Image:                     image,
		ServiceAccountToken:       tr.Status.Token,
		ServiceAccountAnnotations: map[string]string{},
	}
}

// runProvider runs the credential provider binary as the kubelet does:
// the request on stdin, the answer on stdout, errors on stderr.
func runProvider(t *testing.T, ctx context.Context, bin, registry string, req any) (stdout, stderr []byte, err error) {
	t.Helper()
	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-registry="+registry)
	cmd.Stdin = bytes.NewReader(in)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.Bytes(), errOut.Bytes(), err
}

// TestCredentialProviderAnswerPulls feeds the real qci-credential-provider
// the request a kubelet sends for a pod: a token from the TokenRequest API,
// bound to the pod and to the function's audience. Its answer's
// credentials log in and pull with skopeo and podman.
func TestCredentialProviderAnswerPulls(t *testing.T) {
	needCluster(t)
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	pm := clienttools.NewPodman(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	applyDeployRBAC(t, ctx)
	setupUsers(t, ctx)
	s := start(t, ctx, map[string]string{"QCI_TOKEN_AUDIENCES": exposed})

	bin := buildProvider(t, ctx)
	cs := admin(t)
	image := s.proxy.Host + "/" + repo + ":" + tag
	pod, tr, req := kubeletRequest(t, ctx, cs, "puller", image)
	before := time.Now()
	out, errOut, err := runProvider(t, ctx, bin, s.proxy.Host, req)
	if err != nil || len(errOut) != 0 {
		t.Fatalf("provider: %v\nstderr: %s", err, errOut)
	}
	var resp credentialproviderv1.CredentialProviderResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	if resp.APIVersion != req.APIVersion || resp.Kind != "CredentialProviderResponse" || resp.CacheKeyType != credentialproviderv1.RegistryPluginCacheKeyType {
		t.Errorf("answer %s", out)
	}
	// Half of what is left of the token's 10 minutes.
	left := tr.Status.ExpirationTimestamp.Sub(before)
	if d := resp.CacheDuration; d == nil || d.Duration > left/2 || d.Duration < left/2-time.Minute {
		t.Errorf("cacheDuration %v, want about %v", d, left/2)
	}
	auth, ok := resp.Auth[s.proxy.Host]
	if !ok || len(resp.Auth) != 1 || auth.Password != tr.Status.Token || auth.Username == "" {
		t.Fatalf("auth %+v, want the pod's token for %s only", resp.Auth, s.proxy.Host)
	}

	// skopeo: log in with the answer, then copy the image out.
	authfile := filepath.Join(t.TempDir(), "auth.json")
	if out, err := clienttools.Run(ctx, skopeo, "login", "--authfile", authfile, "--tls-verify=false", "-u", auth.Username, "-p", auth.Password, s.proxy.Host); err != nil {
		t.Fatalf("skopeo login: %v\n%s", err, out)
	}
	if out, err := clienttools.Run(ctx, skopeo, "copy", "--authfile", authfile, "--src-tls-verify=false", "docker://"+image, "dir:"+t.TempDir()); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	// podman: the same.
	if out, err := pm.Run(ctx, "login", "--authfile", pm.Authfile, "--tls-verify=false", "-u", auth.Username, "-p", auth.Password, s.proxy.Host); err != nil {
		t.Fatalf("podman login: %v\n%s", err, out)
	}
	if out, err := pm.Run(ctx, "pull", "--authfile", pm.Authfile, "--tls-verify=false", image); err != nil {
		t.Fatalf("podman pull: %v\n%s", err, out)
	}

	// Once the pod is gone, its token logs in no more.
	noErr(t, cs.CoreV1().Pods("ci").Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
	eventually(t, "the deleted pod's token is refused", func() bool {
		code, _ := s.login(t, auth.Username, auth.Password)
		return code == 401
	})

	// A request without a token (a kubelet without tokenAttributes): a
	// message on stderr, nothing on stdout, a non-zero exit.
	req.ServiceAccountToken = ""
	out, errOut, err = runProvider(t, ctx, bin, s.proxy.Host, req)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("provider without a token: %v", err)
	}
	if len(out) != 0 || !strings.Contains(string(errOut), "holds no serviceAccountToken") {
		t.Errorf("stdout %q, stderr %q", out, errOut)
	}
}
