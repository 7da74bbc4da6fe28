package main

import (
	"bytes"
	"os"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubeletconfigv1 "k8s.io/kubelet/config/v1"
	credentialproviderv1 "k8s.io/kubelet/pkg/apis/credentialprovider/v1"
	"sigs.k8s.io/yaml"
)

const buildFarm = "../../knative/examples/build-farm/"

// TestShippedKubeletConfig decodes the shipped CredentialProviderConfig with
// the kubelet's own types, strictly, and checks that it runs this provider
// the way it must run: for qci-appci's host only, with a token bound to
// qci-appci's URL, cached per token.
func TestShippedKubeletConfig(t *testing.T) {
	data, err := os.ReadFile(buildFarm + "credential-provider-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := kubeletconfigv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	obj, _, err := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer().Decode(data, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, ok := obj.(*kubeletconfigv1.CredentialProviderConfig)
	if !ok {
		t.Fatalf("decoded a %T", obj)
	}
	if len(cfg.Providers) != 1 {
		t.Fatalf("%d providers, want 1", len(cfg.Providers))
	}
	p := cfg.Providers[0]
	const host = "registry.ci.example.com"
	if p.Name != "qci-credential-provider" {
		t.Errorf("name %q: the kubelet runs the executable of that name", p.Name)
	}
	if !slices.Equal(p.MatchImages, []string{host}) {
		t.Errorf("matchImages %q, want only %s", p.MatchImages, host)
	}
	if p.APIVersion != credentialproviderv1.SchemeGroupVersion.String() {
		t.Errorf("apiVersion %q: runPlugin reads only %s", p.APIVersion, credentialproviderv1.SchemeGroupVersion)
	}
	if p.DefaultCacheDuration == nil {
		t.Error("defaultCacheDuration is required by the kubelet")
	}
	if !slices.Equal(p.Args, []string{"-registry=" + host}) {
		t.Errorf("args %q, want -registry=%s", p.Args, host)
	}
	ta := p.TokenAttributes
	if ta == nil {
		t.Fatal("no tokenAttributes: the kubelet would send no token")
	}
	if ta.ServiceAccountTokenAudience != "https://"+host {
		t.Errorf("audience %q, want qci-appci's URL", ta.ServiceAccountTokenAudience)
	}
	if ta.CacheType != kubeletconfigv1.TokenServiceAccountTokenCacheType {
		t.Errorf("cacheType %q: the answer is the token itself, so it must be cached per token", ta.CacheType)
	}
	if ta.RequireServiceAccount == nil || !*ta.RequireServiceAccount {
		t.Error("requireServiceAccount must be true: without a service account there is no token to answer with")
	}
}

// TestShippedBuildFarmRBAC decodes the shipped RBAC strictly and checks
// that it grants qci-appci's reviewer system:auth-delegator only, and the
// pods' service accounts exactly the pull access qci-appci's review asks
// for, in the namespace the clusters example names.
func TestShippedBuildFarmRBAC(t *testing.T) {
	data, err := os.ReadFile(buildFarm + "rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var crbs []rbacv1.ClusterRoleBinding
	var roles []rbacv1.Role
	var rbs []rbacv1.RoleBinding
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		decode := func(v any) {
			if err := yaml.UnmarshalStrict(doc, v); err != nil {
				t.Fatalf("%s: %v", meta.Kind, err)
			}
		}
		switch meta.Kind {
		case "ClusterRoleBinding":
			var o rbacv1.ClusterRoleBinding
			decode(&o)
			crbs = append(crbs, o)
		case "Role":
			var o rbacv1.Role
			decode(&o)
			roles = append(roles, o)
		case "RoleBinding":
			var o rbacv1.RoleBinding
			decode(&o)
			rbs = append(rbs, o)
		case "Namespace", "ServiceAccount":
		default:
			t.Errorf("unexpected kind %q", meta.Kind)
		}
	}
	if len(crbs) != 1 || crbs[0].RoleRef.Name != "system:auth-delegator" || len(crbs[0].Subjects) != 1 ||
		crbs[0].Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: "qci-appci-reviewer", Namespace: "qci"}) {
		t.Errorf("cluster role bindings %+v, want system:auth-delegator for qci/qci-appci-reviewer only", crbs)
	}
	want := []rbacv1.PolicyRule{{APIGroups: []string{"image.openshift.io"}, Resources: []string{"imagestreams/layers"}, Verbs: []string{"get"}}}
	if len(roles) != 1 || roles[0].Namespace != "qci-appci-pull" || len(roles[0].Rules) != 1 ||
		!slices.Equal(roles[0].Rules[0].APIGroups, want[0].APIGroups) || !slices.Equal(roles[0].Rules[0].Resources, want[0].Resources) ||
		!slices.Equal(roles[0].Rules[0].Verbs, want[0].Verbs) {
		t.Errorf("roles %+v, want get imagestreams/layers in qci-appci-pull only", roles)
	}
	if len(rbs) != 1 || rbs[0].Namespace != "qci-appci-pull" || rbs[0].RoleRef.Name != "qci-appci-puller" {
		t.Errorf("role bindings %+v", rbs)
	}
}
