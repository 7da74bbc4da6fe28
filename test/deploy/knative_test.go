package deploy_test

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	networkingv1alpha1 "knative.dev/networking/pkg/apis/networking/v1alpha1"
	"knative.dev/pkg/apis"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	servingv1beta1 "knative.dev/serving/pkg/apis/serving/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/deploy"
)

// documents splits a YAML file into its documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func kindOf(t *testing.T, doc []byte) string {
	t.Helper()
	var meta struct{ Kind string }
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatal(err)
	}
	return meta.Kind
}

func strict(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatalf("strict decode: %v\n%s", err, doc)
	}
}

func loadService(t *testing.T) *servingv1.Service {
	t.Helper()
	docs := documents(t, "../../knative/service.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents in service.yaml", len(docs))
	}
	var svc servingv1.Service
	strict(t, docs[0], &svc)
	return &svc
}

func TestKnativeServiceValidates(t *testing.T) {
	svc := loadService(t)
	ctx := apis.WithinCreate(context.Background())
	svc.SetDefaults(ctx)
	if err := svc.Validate(ctx); err != nil {
		t.Fatalf("Knative rejects service.yaml: %v", err)
	}
	tmpl := svc.Spec.Template
	if got := tmpl.Annotations["autoscaling.knative.dev/min-scale"]; got != "0" {
		t.Errorf("min-scale %q, want \"0\" (scale to zero)", got)
	}
	if tmpl.Annotations["autoscaling.knative.dev/max-scale"] == "" || tmpl.Annotations["autoscaling.knative.dev/target"] == "" {
		t.Errorf("max-scale and target must be set: %v", tmpl.Annotations)
	}
	if tmpl.Spec.ContainerConcurrency == nil || *tmpl.Spec.ContainerConcurrency < 10 {
		t.Errorf("containerConcurrency %v: streams need many per instance", tmpl.Spec.ContainerConcurrency)
	}
	if tmpl.Spec.TimeoutSeconds == nil || *tmpl.Spec.TimeoutSeconds < 300 {
		t.Errorf("timeoutSeconds %v: too short for large blobs", tmpl.Spec.TimeoutSeconds)
	}
	if tmpl.Spec.ServiceAccountName != "qci-appci" {
		t.Errorf("serviceAccountName %q", tmpl.Spec.ServiceAccountName)
	}
	c := tmpl.Spec.Containers[0]
	if c.Image != "ko://github.com/qci-appci/qci-appci/cmd/qci-appci" {
		t.Errorf("image %q", c.Image)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "h2c" {
		t.Errorf("ports %+v: want one named h2c", c.Ports)
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
			t.Errorf("%s probe %+v: want GET /healthz", name, p)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", c.Resources)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil ||
		len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("securityContext %+v", sc)
	}
}

func TestKnativeEnvMatchesConfig(t *testing.T) {
	c := loadService(t).Spec.Template.Spec.Containers[0]
	known := deploy.EnvNames()
	set := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, ok := known[e.Name]; !ok {
			t.Errorf("env %s is not a variable of the config package", e.Name)
		}
		if known[e.Name] && !strings.HasSuffix(e.Name, "_FILE") {
			t.Errorf("secret %s given inline: mount it and use %s_FILE", e.Name, e.Name)
		}
		set[e.Name] = e
	}
	if _, ok := set["PORT"]; ok {
		t.Error("PORT is Knative's to set")
	}
	mounts := map[string]string{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	for _, s := range config.SecretEnvNames() {
		e, ok := set[s+"_FILE"]
		if !ok {
			t.Errorf("%s_FILE is not set", s)
			continue
		}
		mounted := false
		for _, p := range mounts {
			if strings.HasPrefix(e.Value, p+"/") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("%s_FILE=%s is under no volume mount %v", s, e.Value, mounts)
		}
	}
	if len(c.Env) < 8 {
		t.Errorf("only %d env vars", len(c.Env))
	}
}

func TestRBACGrantsAuthDelegatorOnly(t *testing.T) {
	docs := documents(t, "../../knative/rbac.yaml")
	var sa *corev1.ServiceAccount
	var crbs []rbacv1.ClusterRoleBinding
	for _, d := range docs {
		switch k := kindOf(t, d); k {
		case "ServiceAccount":
			sa = &corev1.ServiceAccount{}
			strict(t, d, sa)
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			strict(t, d, &b)
			crbs = append(crbs, b)
		default:
			t.Errorf("unexpected kind %s in rbac.yaml", k)
		}
	}
	if sa == nil || sa.Name != "qci-appci" {
		t.Fatalf("service account %+v", sa)
	}
	if len(crbs) != 1 || crbs[0].RoleRef.Name != "system:auth-delegator" || crbs[0].RoleRef.Kind != "ClusterRole" ||
		len(crbs[0].Subjects) != 1 || crbs[0].Subjects[0].Name != sa.Name || crbs[0].Subjects[0].Namespace != sa.Namespace {
		t.Errorf("bindings %+v", crbs)
	}
	if loadService(t).Spec.Template.Spec.ServiceAccountName != sa.Name {
		t.Error("the service does not run as the bound service account")
	}
}

func TestSecretExampleMatchesMounts(t *testing.T) {
	svc := loadService(t)
	secrets := map[string]*corev1.Secret{}
	for _, d := range documents(t, "../../knative/examples/secret.example.yaml") {
		var s corev1.Secret
		strict(t, d, &s)
		secrets[s.Name] = &s
	}
	c := svc.Spec.Template.Spec.Containers[0]
	for _, v := range svc.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		s, ok := secrets[v.Secret.SecretName]
		if !ok {
			t.Errorf("volume %s uses secret %s, not in the example", v.Name, v.Secret.SecretName)
			continue
		}
		var mount string
		for _, m := range c.VolumeMounts {
			if m.Name == v.Name {
				mount = m.MountPath
			}
		}
		for _, e := range c.Env {
			if dir, key := filepath.Split(e.Value); strings.HasSuffix(e.Name, "_FILE") && filepath.Clean(dir) == mount {
				if _, ok := s.StringData[key]; !ok {
					t.Errorf("%s reads key %s that secret %s lacks", e.Name, key, s.Name)
				}
			}
		}
	}
}

func TestKustomizationListsTheManifests(t *testing.T) {
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Namespace  string   `json:"namespace"`
		Resources  []string `json:"resources"`
	}
	strict(t, documents(t, "../../knative/kustomization.yaml")[0], &k)
	matches, _ := filepath.Glob("../../knative/*.yaml")
	for _, m := range matches {
		base := filepath.Base(m)
		if base == "kustomization.yaml" {
			continue
		}
		found := false
		for _, r := range k.Resources {
			found = found || r == base
		}
		if !found {
			t.Errorf("kustomization does not list %s", base)
		}
	}
}

// TestDomainMappingValidates decodes domainmapping.yaml into Knative's own
// type and validates it: it maps QCI_EXPOSED_URL's host to the Service, and
// the example ClusterDomainClaim lets the Service's namespace claim it.
func TestDomainMappingValidates(t *testing.T) {
	docs := documents(t, "../../knative/domainmapping.yaml")
	if len(docs) != 1 {
		t.Fatalf("%d documents in domainmapping.yaml", len(docs))
	}
	var dm servingv1beta1.DomainMapping
	strict(t, docs[0], &dm)
	ctx := apis.WithinCreate(context.Background())
	dm.SetDefaults(ctx)
	if err := dm.Validate(ctx); err != nil {
		t.Fatalf("Knative rejects domainmapping.yaml: %v", err)
	}
	svc := loadService(t)
	var exposed string
	for _, e := range svc.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "QCI_EXPOSED_URL" {
			exposed = e.Value
		}
	}
	u, err := url.Parse(exposed)
	if err != nil || u.Host == "" {
		t.Fatalf("QCI_EXPOSED_URL %q", exposed)
	}
	if dm.Name != u.Host {
		t.Errorf("DomainMapping %s, but QCI_EXPOSED_URL names %s: tokens would name the wrong service", dm.Name, u.Host)
	}
	if dm.Namespace != svc.Namespace || dm.Spec.Ref.Kind != "Service" || dm.Spec.Ref.APIVersion != "serving.knative.dev/v1" ||
		dm.Spec.Ref.Name != svc.Name || dm.Spec.Ref.Namespace != svc.Namespace {
		t.Errorf("DomainMapping %s/%s refers to %+v, not Service %s/%s", dm.Namespace, dm.Name, dm.Spec.Ref, svc.Namespace, svc.Name)
	}

	var claim networkingv1alpha1.ClusterDomainClaim
	strict(t, documents(t, "../../knative/examples/clusterdomainclaim.example.yaml")[0], &claim)
	if claim.Kind != "ClusterDomainClaim" || claim.APIVersion != networkingv1alpha1.SchemeGroupVersion.String() ||
		claim.Name != dm.Name || claim.Spec.Namespace != dm.Namespace {
		t.Errorf("ClusterDomainClaim %+v does not let %s claim %s", claim, dm.Namespace, dm.Name)
	}
}

// TestKnativeScrapeAnnotations checks that Prometheus is told to scrape the
// port the metrics are served on.
func TestKnativeScrapeAnnotations(t *testing.T) {
	svc := loadService(t)
	ann := svc.Spec.Template.Annotations
	var port string
	for _, e := range svc.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "QCI_METRICS_PORT" {
			port = e.Value
		}
	}
	if port == "" || port == "0" {
		t.Fatalf("QCI_METRICS_PORT %q: metrics off", port)
	}
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != port || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("scrape annotations %v do not name port %s and /metrics", ann, port)
	}
}
