package clustertest_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/qci-appci/qci-appci/test/clustertest"
)

// start starts a server and loads the kubeconfig it writes the way the
// function does: through clientcmd, with JSON as the content type.
func start(t *testing.T) (*clustertest.Server, *rest.Config) {
	t.Helper()
	s, err := clustertest.Start()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Close)
	path, err := s.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatalf("WriteKubeconfig: %v", err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("load kubeconfig %s: %v", path, err)
	}
	cfg.ContentType = "application/json"
	return s, cfg
}

func tokenReviews(t *testing.T, cfg *rest.Config) authnclient.TokenReviewInterface {
	t.Helper()
	c, err := authnclient.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("authentication client: %v", err)
	}
	return c.TokenReviews()
}

func accessReviews(t *testing.T, cfg *rest.Config) authzclient.SubjectAccessReviewInterface {
	t.Helper()
	c, err := authzclient.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("authorization client: %v", err)
	}
	return c.SubjectAccessReviews()
}

func review(t *testing.T, c authnclient.TokenReviewInterface, token string, audiences ...string) authenticationv1.TokenReviewStatus {
	t.Helper()
	got, err := c.Create(context.Background(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenReview create: %v", err)
	}
	return got.Status
}

// pull is the SubjectAccessReview the function sends for a pull.
func pull(user string, groups []string, namespace string) *authorizationv1.SubjectAccessReview {
	return &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user, Groups: groups, UID: "uid-" + user,
		Extra: map[string]authorizationv1.ExtraValue{"scopes.authorization.openshift.io": {"user:full"}},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: namespace, Verb: "get", Group: "image.openshift.io",
			Resource: "imagestreams", Subresource: "layers", Name: "ci",
		},
	}}
}

func access(t *testing.T, c authzclient.SubjectAccessReviewInterface, sar *authorizationv1.SubjectAccessReview) authorizationv1.SubjectAccessReviewStatus {
	t.Helper()
	got, err := c.Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview create: %v", err)
	}
	return got.Status
}

func TestKubeconfigPointsAtLoopbackWithCA(t *testing.T) {
	s, cfg := start(t)
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Errorf("URL = %q, want https://127.0.0.1:PORT", s.URL())
	}
	if cfg.Host != s.URL() {
		t.Errorf("kubeconfig server = %q, want %q", cfg.Host, s.URL())
	}
	if len(cfg.CAData) == 0 || cfg.Insecure {
		t.Errorf("kubeconfig has no CA data (insecure=%v); client-go would not verify the server", cfg.Insecure)
	}
	if cfg.BearerToken == "" || cfg.BearerToken != s.CallerToken() {
		t.Errorf("kubeconfig token = %q, want the caller token", cfg.BearerToken)
	}
}

func TestTokenReviewKnownToken(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok-alice", clustertest.User{
		Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated", "devs"},
		Extra: map[string][]string{"scopes.authorization.openshift.io": {"user:full"}},
	})
	st := review(t, tokenReviews(t, cfg), "tok-alice")
	if !st.Authenticated || st.Error != "" {
		t.Fatalf("status = %+v, want authenticated", st)
	}
	if st.User.Username != "alice" || st.User.UID != "uid-alice" ||
		!slices.Equal(st.User.Groups, []string{"system:authenticated", "devs"}) ||
		!slices.Equal(st.User.Extra["scopes.authorization.openshift.io"], []string{"user:full"}) {
		t.Errorf("user = %+v", st.User)
	}
	if !slices.Equal(st.Audiences, []string{clustertest.DefaultAudience}) {
		t.Errorf("audiences = %v, want the API server default", st.Audiences)
	}
	got := s.TokenReviews()
	if len(got) != 1 || got[0].Spec.Token != "tok-alice" {
		t.Errorf("recorded reviews = %+v, want one for tok-alice", got)
	}
}

func TestTokenReviewUnknownAndRemovedToken(t *testing.T) {
	s, cfg := start(t)
	c := tokenReviews(t, cfg)
	if st := review(t, c, "nope"); st.Authenticated || st.Error == "" || st.User.Username != "" {
		t.Errorf("unknown token: status = %+v, want unauthenticated with an error", st)
	}
	s.AddToken("tok", clustertest.User{Name: "bob"})
	if st := review(t, c, "tok"); !st.Authenticated {
		t.Fatalf("added token: status = %+v", st)
	}
	s.RemoveToken("tok")
	if st := review(t, c, "tok"); st.Authenticated || st.Error == "" {
		t.Errorf("removed token: status = %+v, want unauthenticated with an error", st)
	}
	if n := len(s.TokenReviews()); n != 3 {
		t.Errorf("recorded %d reviews, want 3", n)
	}
}

func TestTokenReviewAudiences(t *testing.T) {
	s, cfg := start(t)
	c := tokenReviews(t, cfg)
	s.AddToken("bound", clustertest.User{Name: "svc"}, "qci", "other")
	s.AddToken("default", clustertest.User{Name: "alice"})
	for _, tc := range []struct {
		token     string
		requested []string
		want      []string // nil: not authenticated
	}{
		{"bound", []string{"qci"}, []string{"qci"}},
		{"bound", []string{"x", "qci", "other"}, []string{"qci", "other"}},
		{"bound", []string{"x"}, nil},
		{"bound", nil, nil}, // not bound to the default audience
		{"default", []string{"qci"}, nil},
		{"default", []string{clustertest.DefaultAudience}, []string{clustertest.DefaultAudience}},
	} {
		st := review(t, c, tc.token, tc.requested...)
		if tc.want == nil {
			if st.Authenticated || st.Error == "" {
				t.Errorf("%s for %v: status = %+v, want unauthenticated with an error", tc.token, tc.requested, st)
			}
			continue
		}
		if !st.Authenticated || !slices.Equal(st.Audiences, tc.want) {
			t.Errorf("%s for %v: status = %+v, want authenticated for %v", tc.token, tc.requested, st, tc.want)
		}
	}
	if got := s.TokenReviews()[1].Spec.Audiences; !slices.Equal(got, []string{"x", "qci", "other"}) {
		t.Errorf("recorded spec.audiences = %v", got)
	}
}

func TestTokenReviewEmptyTokenIsBadRequest(t *testing.T) {
	_, cfg := start(t)
	_, err := tokenReviews(t, cfg).Create(context.Background(), &authenticationv1.TokenReview{}, metav1.CreateOptions{})
	if !apierrors.IsBadRequest(err) {
		t.Errorf("err = %v, want 400 BadRequest", err)
	}
}

func TestSubjectAccessReview(t *testing.T) {
	s, cfg := start(t)
	c := accessReviews(t, cfg)
	s.Allow("alice")
	s.AllowGroup("ci-pullers")

	st := access(t, c, pull("alice", []string{"system:authenticated"}, "ocp"))
	if !st.Allowed || st.Denied || st.Reason == "" {
		t.Errorf("allowed user: status = %+v, want allowed with a reason", st)
	}
	if st := access(t, c, pull("carol", []string{"system:authenticated", "ci-pullers"}, "ocp")); !st.Allowed {
		t.Errorf("allowed group: status = %+v, want allowed", st)
	}
	if st := access(t, c, pull("bob", []string{"system:authenticated"}, "ocp")); st.Allowed || st.Denied {
		t.Errorf("other user: status = %+v, want not allowed (no opinion)", st)
	}
	if st := access(t, c, pull("alice", nil, "elsewhere")); st.Allowed {
		t.Errorf("other namespace: status = %+v, want not allowed", st)
	}
	for _, mutate := range []func(*authorizationv1.ResourceAttributes){
		func(ra *authorizationv1.ResourceAttributes) { ra.Verb = "update" },
		func(ra *authorizationv1.ResourceAttributes) { ra.Group = "" },
		func(ra *authorizationv1.ResourceAttributes) { ra.Resource = "imagestreamtags" },
		func(ra *authorizationv1.ResourceAttributes) { ra.Subresource = "" },
	} {
		sar := pull("alice", nil, "ocp")
		mutate(sar.Spec.ResourceAttributes)
		if st := access(t, c, sar); st.Allowed {
			t.Errorf("attributes %+v: status = %+v, want not allowed", *sar.Spec.ResourceAttributes, st)
		}
	}
	s.Revoke("alice")
	if st := access(t, c, pull("alice", nil, "ocp")); st.Allowed {
		t.Errorf("revoked user: status = %+v, want not allowed", st)
	}
	s.RevokeGroup("ci-pullers")
	if st := access(t, c, pull("carol", []string{"ci-pullers"}, "ocp")); st.Allowed {
		t.Errorf("revoked group: status = %+v, want not allowed", st)
	}
	s.AllowGroup("devs")
	s.Deny("dave")
	if st := access(t, c, pull("dave", []string{"devs"}, "ocp")); st.Allowed || !st.Denied || st.Reason == "" {
		t.Errorf("denied user: status = %+v, want denied with a reason", st)
	}

	got := s.SubjectAccessReviews()
	if len(got) != 11 {
		t.Fatalf("recorded %d reviews, want 11", len(got))
	}
	first := got[0].Spec
	if first.User != "alice" || first.UID != "uid-alice" || !slices.Equal(first.Groups, []string{"system:authenticated"}) ||
		!slices.Equal(first.Extra["scopes.authorization.openshift.io"], []string{"user:full"}) ||
		first.ResourceAttributes == nil || first.ResourceAttributes.Name != "ci" {
		t.Errorf("recorded spec = %+v, want everything the client sent", first)
	}
}

func TestSubjectAccessReviewNamespace(t *testing.T) {
	s, cfg := start(t)
	c := accessReviews(t, cfg)
	s.Allow("alice")
	s.SetNamespace("team")
	if st := access(t, c, pull("alice", nil, "team")); !st.Allowed {
		t.Errorf("configured namespace: status = %+v, want allowed", st)
	}
	if st := access(t, c, pull("alice", nil, "ocp")); st.Allowed {
		t.Errorf("default namespace after SetNamespace: status = %+v, want not allowed", st)
	}
}

func TestNamespaceField(t *testing.T) {
	s, cfg := start(t)
	s.Namespace = "team"
	s.Allow("alice")
	if st := access(t, accessReviews(t, cfg), pull("alice", nil, "team")); !st.Allowed {
		t.Errorf("namespace set through the field: status = %+v, want allowed", st)
	}
}

func TestSubjectAccessReviewInvalid(t *testing.T) {
	_, cfg := start(t)
	c := accessReviews(t, cfg)
	noSubject := pull("", nil, "ocp")
	noAttributes := pull("alice", nil, "ocp")
	noAttributes.Spec.ResourceAttributes = nil
	for name, sar := range map[string]*authorizationv1.SubjectAccessReview{"no user or group": noSubject, "no attributes": noAttributes} {
		if _, err := c.Create(context.Background(), sar, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("%s: err = %v, want 422 Invalid", name, err)
		}
	}
}

func TestCallerTokenRequired(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	for name, token := range map[string]string{"missing": "", "wrong": "not-the-caller"} {
		anon := rest.CopyConfig(cfg)
		anon.BearerToken = token
		_, err := tokenReviews(t, anon).Create(context.Background(), &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("%s caller token: err = %v, want 401 Unauthorized", name, err)
		}
		_, err = accessReviews(t, anon).Create(context.Background(), pull("alice", nil, "ocp"), metav1.CreateOptions{})
		if !apierrors.IsUnauthorized(err) {
			t.Errorf("%s caller token, SAR: err = %v, want 401 Unauthorized", name, err)
		}
	}
	if n := len(s.TokenReviews()) + len(s.SubjectAccessReviews()); n != 0 {
		t.Errorf("recorded %d reviews from unauthenticated callers, want 0", n)
	}
}

func TestForbidReviews(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	s.Allow("alice")
	authn, authz := tokenReviews(t, cfg), accessReviews(t, cfg)
	s.SetForbidReviews(true)
	_, err := authn.Create(context.Background(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "tokenreviews") {
		t.Errorf("TokenReview: err = %v, want 403 Forbidden naming tokenreviews", err)
	}
	_, err = authz.Create(context.Background(), pull("alice", nil, "ocp"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "subjectaccessreviews") {
		t.Errorf("SAR: err = %v, want 403 Forbidden naming subjectaccessreviews", err)
	}
	s.SetForbidReviews(false)
	if st := review(t, authn, "tok"); !st.Authenticated {
		t.Errorf("after SetForbidReviews(false): status = %+v", st)
	}
	if st := access(t, authz, pull("alice", nil, "ocp")); !st.Allowed {
		t.Errorf("after SetForbidReviews(false): status = %+v", st)
	}
}

// TestDown checks a client sees a connection error, not an HTTP answer,
// both on a fresh connection and on one it kept from before.
func TestDown(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	s.Allow("alice")
	authn, authz := tokenReviews(t, cfg), accessReviews(t, cfg)
	if st := review(t, authn, "tok"); !st.Authenticated { // leaves a kept-alive connection
		t.Fatalf("before down: status = %+v", st)
	}
	s.SetDown(true)
	_, err := authn.Create(context.Background(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
	assertConnectionError(t, "TokenReview", err)
	_, err = authz.Create(context.Background(), pull("alice", nil, "ocp"), metav1.CreateOptions{})
	assertConnectionError(t, "SAR", err)

	s.SetDown(false)
	if st := review(t, authn, "tok"); !st.Authenticated {
		t.Errorf("after SetDown(false): status = %+v", st)
	}
	if st := access(t, authz, pull("alice", nil, "ocp")); !st.Allowed {
		t.Errorf("after SetDown(false): status = %+v", st)
	}
}

func assertConnectionError(t *testing.T, what string, err error) {
	t.Helper()
	var status apierrors.APIStatus
	var urlErr *url.Error
	switch {
	case err == nil:
		t.Errorf("%s while down: no error", what)
	case errors.As(err, &status):
		t.Errorf("%s while down: got an HTTP answer %d: %v", what, status.Status().Code, err)
	case !errors.As(err, &urlErr):
		t.Errorf("%s while down: err = %v (%T), want a transport error", what, err, err)
	}
}

// TestProtobufIsUnsupported checks a client left at client-go's protobuf
// default is told why instead of getting garbage.
func TestProtobufIsUnsupported(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	proto := rest.CopyConfig(cfg)
	proto.ContentType = ""
	_, err := tokenReviews(t, proto).Create(context.Background(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
	if !apierrors.IsUnsupportedMediaType(err) || !strings.Contains(err.Error(), "JSON") {
		t.Errorf("err = %v, want 415 saying JSON is needed", err)
	}
}

func TestUnknownPathIsNotFound(t *testing.T) {
	_, cfg := start(t)
	c, err := authnclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.RESTClient().Get().AbsPath("/api/v1/namespaces").Do(context.Background()).Error()
	if !apierrors.IsNotFound(err) {
		t.Errorf("err = %v, want 404", err)
	}
}

func TestWriteKubeconfigFile(t *testing.T) {
	s, _ := start(t)
	dir := t.TempDir()
	path, err := s.WriteKubeconfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(path)
	if err != nil {
		t.Fatalf("kubeconfig not written: %v", err)
	}
	if info.Mode().Perm()&0o077 != 0 {
		t.Errorf("kubeconfig mode = %v, want private (it holds a token)", info.Mode().Perm())
	}
}

func TestFailReviews(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	s.Allow("alice")
	authn, authz := tokenReviews(t, cfg), accessReviews(t, cfg)
	s.FailReviews(http.StatusUnprocessableEntity)
	_, err := authn.Create(context.Background(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Errorf("TokenReview: err = %v, want 422 Invalid", err)
	}
	s.FailReviews(http.StatusTooManyRequests)
	if _, err := authz.Create(context.Background(), pull("alice", nil, "ocp"), metav1.CreateOptions{}); !apierrors.IsTooManyRequests(err) {
		t.Errorf("SAR: err = %v, want 429", err)
	}
	if n := s.TokenReviewCount(); n != 1 {
		t.Errorf("TokenReviewCount = %d, want 1 (a refused review is recorded)", n)
	}
	s.FailReviews(0)
	if st := review(t, authn, "tok"); !st.Authenticated {
		t.Errorf("after FailReviews(0): %+v", st)
	}
}

func TestEvaluationError(t *testing.T) {
	s, cfg := start(t)
	s.Allow("alice")
	authz := accessReviews(t, cfg)
	s.SetEvaluationError("webhook: connection refused")
	if st := access(t, authz, pull("bob", nil, "ocp")); st.Allowed || st.Denied || st.EvaluationError != "webhook: connection refused" {
		t.Errorf("bob: %+v, want not allowed with the evaluation error", st)
	}
	if st := access(t, authz, pull("alice", nil, "ocp")); !st.Allowed {
		t.Errorf("alice, allowed by RBAC despite the failing authorizer: %+v", st)
	}
}

func TestHoldReviews(t *testing.T) {
	s, cfg := start(t)
	s.AddToken("tok", clustertest.User{Name: "alice"})
	authn := tokenReviews(t, cfg)
	arrived, release := s.HoldReviews()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := authn.Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("held review after the caller hung up: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Abandoned() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the caller hang up")
		}
	}
	done := make(chan *authenticationv1.TokenReview, 1)
	go func() {
		tr, err := authn.Create(context.Background(), &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: "tok"}}, metav1.CreateOptions{})
		errc <- err
		done <- tr
	}()
	<-arrived
	release()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if tr := <-done; !tr.Status.Authenticated {
		t.Errorf("released review: %+v", tr.Status)
	}
	release() // a second release does nothing
}
