package function_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/clustertest"
)

const (
	danaToken = "sha256~dana-cluster-token" // allowed on ci/ci-operator only
	erinToken = "sha256~erin-cluster-token" // in group team-a, bound in namespace team-a
)

// streamEnv is env with more image streams in the mirror and two users
// allowed per image stream or per namespace.
type streamEnv struct {
	*env
	secret v1.Image // ocp-private/secret:latest
	teamX  v1.Image // team-a/x:latest
}

func newStreamEnv(t *testing.T, o envOptions) *streamEnv {
	t.Helper()
	e := &streamEnv{env: newEnv(t, o)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if e.secret, err = e.reg.PushRandomImage(ctx, "ocp-private_secret_latest", 1, 1024); err != nil {
		t.Fatal(err)
	}
	if e.teamX, err = e.reg.PushRandomImage(ctx, "team-a_x_latest", 1, 1024); err != nil {
		t.Fatal(err)
	}
	if _, err = e.reg.PushRandomImage(ctx, "team-a_y_v1", 1, 1024); err != nil {
		t.Fatal(err)
	}
	e.cluster.AddToken(danaToken, clustertest.User{Name: "dana", UID: "uid-dana", Groups: []string{"system:authenticated"}})
	e.cluster.AddToken(erinToken, clustertest.User{Name: "erin", UID: "uid-erin", Groups: []string{"system:authenticated", "team-a"}})
	e.cluster.AllowOn("dana", "ci", "ci-operator")
	e.cluster.AllowGroupOn("team-a", "team-a", "")
	e.reg.ResetRequests()
	return e
}

// pull pulls host/repository:tag the way crane does (the docker token
// protocol from the function's own challenge, Basic credentials at
// /v2/auth), reading every blob, and returns the image's digest.
func (e *streamEnv) pull(user, pass, repository, tag string) (v1.Hash, error) {
	e.t.Helper()
	ref, err := name.ParseReference(e.host()+"/"+repository+":"+tag, name.Insecure)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: user, Password: pass}))
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		rc.Close()
	}
	if _, err := img.RawConfigFile(); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

func digestOf(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// streamReviews are the SubjectAccessReviews the cluster got for user on
// the image stream ns/name ("" name: namespace-wide).
func streamReviews(sars []authorizationv1.SubjectAccessReview, user, ns, name string) int {
	n := 0
	for _, s := range sars {
		ra := s.Spec.ResourceAttributes
		if s.Spec.User == user && ra != nil && ra.Namespace == ns && ra.Name == name &&
			ra.Verb == "get" && ra.Group == "image.openshift.io" && ra.Resource == "imagestreams" && ra.Subresource == "layers" {
			n++
		}
	}
	return n
}

// TestPullByImageStream: a user allowed on ci/ci-operator pulls it by its
// image-stream name (the same image as openshift/ci:ci_ci-operator_latest),
// twice with one review, and is refused ocp-private/secret with a 403
// that names the repository and the permission.
func TestPullByImageStream(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	for range 2 {
		got, err := e.pull("dana", danaToken, "ci/ci-operator", "latest")
		if err != nil || got != digestOf(t, e.img) {
			t.Fatalf("pull ci/ci-operator:latest: %v, %v; want %v", got, err, digestOf(t, e.img))
		}
	}
	sars := e.cluster.SubjectAccessReviews()
	if n := streamReviews(sars, "dana", "ci", "ci-operator"); n != 1 || len(sars) != 1 {
		t.Errorf("%d reviews of ci/ci-operator, %d in all, for two pulls; want 1 (cached)", n, len(sars))
	}
	// What reached the upstream: the mirror tag and digests of the one repository.
	var paths []string
	for _, r := range e.upstreamSaw() {
		paths = append(paths, r.Path)
		if !strings.HasPrefix(r.Path, "/v2/openshift/ci/") {
			t.Errorf("upstream got %s", r.Path)
		}
	}
	if !slices.Contains(paths, "/v2/openshift/ci/manifests/ci_ci-operator_latest") {
		t.Errorf("upstream paths %q lack the mirror tag", paths)
	}
	e.assertOnlyRobotTokenUpstream()

	_, err := e.pull("dana", danaToken, "ocp-private/secret", "latest")
	if err == nil || !strings.Contains(err.Error(), "DENIED") || !strings.Contains(err.Error(), "ocp-private/secret") ||
		!strings.Contains(err.Error(), "imagestreams/layers secret (group image.openshift.io) in namespace ocp-private") {
		t.Errorf("pull ocp-private/secret: %v; want 403 DENIED naming it and the permission", err)
	}
	resp, _, body := e.login("dana", danaToken, url.Values{"scope": {"repository:ocp-private/secret:pull"}})
	if resp.StatusCode != http.StatusForbidden || registryError(t, resp, body) != "DENIED" {
		t.Errorf("token for ocp-private/secret: %d %s", resp.StatusCode, body)
	}
	// One denied scope drops that scope only.
	resp, ans, body := e.login("dana", danaToken, url.Values{"scope": {"repository:ocp-private/secret:pull", "repository:ci/ci-operator:pull"}})
	if resp.StatusCode != 200 {
		t.Fatalf("two scopes, one denied: %d %s", resp.StatusCode, body)
	}
	if r, _ := e.get("/v2/ci/ci-operator/manifests/latest", ans.Token); r.StatusCode != 200 {
		t.Errorf("granted scope: %d", r.StatusCode)
	}
	if r, _ := e.get("/v2/ocp-private/secret/manifests/latest", ans.Token); r.StatusCode != 401 {
		t.Errorf("denied scope: %d, want 401", r.StatusCode)
	}
	// The image-stream grant is not the upstream repository's.
	if r, _ := e.get("/v2/openshift/ci/manifests/ocp-private_secret_latest", ans.Token); r.StatusCode != 401 {
		t.Errorf("upstream repository with an image-stream token: %d, want 401", r.StatusCode)
	}
}

// TestPullByGroupInNamespace: a group bound in a namespace pulls every
// image stream there, with one review per image stream, and nothing else.
func TestPullByGroupInNamespace(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	if got, err := e.pull("erin", erinToken, "team-a/x", "latest"); err != nil || got != digestOf(t, e.teamX) {
		t.Errorf("team-a/x: %v %v", got, err)
	}
	if _, err := e.pull("erin", erinToken, "team-a/y", "v1"); err != nil {
		t.Errorf("team-a/y: %v", err)
	}
	if _, err := e.pull("erin", erinToken, "ci/ci-operator", "latest"); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("ci/ci-operator outside the namespace: %v, want DENIED", err)
	}
	sars := e.cluster.SubjectAccessReviews()
	if streamReviews(sars, "erin", "team-a", "x") != 1 || streamReviews(sars, "erin", "team-a", "y") != 1 {
		t.Errorf("reviews %+v; want one per image stream", sars)
	}
}

// TestOpenImages: QCI_OPEN_IMAGES lets any authenticated cluster user pull
// what it lists, without a review, and nothing more.
func TestOpenImages(t *testing.T) {
	e := newStreamEnv(t, envOptions{configure: func(c *config.Config) { c.OpenImages = []string{"ci/ci-operator", "team-a"} }})
	if got, err := e.pull("bob", bobToken, "ci/ci-operator", "latest"); err != nil || got != digestOf(t, e.img) {
		t.Errorf("open ci/ci-operator: %v %v", got, err)
	}
	if _, err := e.pull("bob", bobToken, "team-a/x", "latest"); err != nil {
		t.Errorf("open namespace team-a: %v", err)
	}
	if n := len(e.cluster.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d reviews for open images; want none", n)
	}
	for _, repo := range []string{"ocp-private/secret", "ci/other", "openshift/ci"} {
		resp, _, body := e.login("bob", bobToken, url.Values{"scope": {"repository:" + repo + ":pull"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s for bob: %d %s; want 403", repo, resp.StatusCode, body)
		}
	}
	// Open to authenticated users only.
	if resp, _, _ := e.login("bob", "sha256~not-a-token", url.Values{"scope": {"repository:ci/ci-operator:pull"}}); resp.StatusCode != 401 {
		t.Errorf("unknown token: %d, want 401", resp.StatusCode)
	}
}

// TestLoginProbeNeedsOnlyAValidClusterToken: a login without a scope
// (podman login) needs no review: a user with no access at all gets a
// token good for /v2/ only; the denial shows at the pull.
func TestLoginProbeNeedsOnlyAValidClusterToken(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	resp, ans, body := e.login("bob", bobToken, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("probe login: %d %s", resp.StatusCode, body)
	}
	if n := len(e.cluster.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d reviews for a login without a scope", n)
	}
	if r, _ := e.get("/v2/", ans.Token); r.StatusCode != 200 {
		t.Errorf("/v2/ with the probe token: %d", r.StatusCode)
	}
	if r, _ := e.get("/v2/ci/ci-operator/manifests/latest", ans.Token); r.StatusCode != 401 {
		t.Errorf("pull with the probe token: %d, want 401 (ask again with the scope)", r.StatusCode)
	}
}

// TestRefreshReauthorizesImageStreams: a refresh reviews each scope again,
// uncached: a user whose grant on the image stream was removed is refused.
func TestRefreshReauthorizesImageStreams(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	scope := []string{"repository:ci/ci-operator:pull"}
	resp, ans, body := e.postForm(url.Values{"grant_type": {"password"}, "username": {"dana"}, "password": {danaToken}, "scope": scope})
	if resp.StatusCode != 200 || ans.RefreshToken == "" {
		t.Fatalf("password grant: %d %s", resp.StatusCode, body)
	}
	resp, ref, body := e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken}, "scope": scope})
	if resp.StatusCode != 200 {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	if n := streamReviews(e.cluster.SubjectAccessReviews(), "dana", "ci", "ci-operator"); n != 2 {
		t.Errorf("%d reviews after login and refresh; want 2 (the refresh asks again)", n)
	}
	if r, _ := e.get("/v2/ci/ci-operator/manifests/latest", ref.AccessToken); r.StatusCode != 200 {
		t.Errorf("refreshed token: %d", r.StatusCode)
	}
	e.cluster.RevokeOn("dana", "ci", "ci-operator")
	resp, _, body = e.postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {ans.RefreshToken}, "scope": scope})
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "ci/ci-operator") {
		t.Errorf("refresh after the grant was removed: %d %s; want 403 naming ci/ci-operator", resp.StatusCode, body)
	}
}

// TestFlatRepositoryOff: QCI_FLAT_REPOSITORY=false grants cluster users
// image streams only; the robot still pulls the upstream repository.
func TestFlatRepositoryOff(t *testing.T) {
	e := newStreamEnv(t, envOptions{configure: func(c *config.Config) { c.FlatRepository = false }})
	resp, _, body := e.login("alice", aliceToken, pullScope) // alice passes the namespace-wide review
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "openshift/ci") {
		t.Errorf("alice on openshift/ci with the flat repository off: %d %s", resp.StatusCode, body)
	}
	if n := len(e.cluster.SubjectAccessReviews()); n != 0 {
		t.Errorf("%d reviews for a repository that is off", n)
	}
	if r, _ := e.get("/v2/openshift/ci/manifests/"+tag, e.pullToken()); r.StatusCode != 200 {
		t.Errorf("robot on openshift/ci: %d", r.StatusCode)
	}
}

// TestDigestsAreSharedByImageStreams: a blob or manifest by digest is
// served under any image stream the token grants (the README's caveat:
// the mirror is one repository, so a digest is not tied to one stream).
func TestDigestsAreSharedByImageStreams(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	_, ans, _ := e.login("dana", danaToken, url.Values{"scope": {"repository:ci/ci-operator:pull"}})
	d := digestOf(t, e.secret)
	if r, body := e.get("/v2/ci/ci-operator/manifests/"+d.String(), ans.Token); r.StatusCode != 200 || r.Header.Get("Docker-Content-Digest") != d.String() {
		t.Errorf("another stream's manifest by digest: %d %s", r.StatusCode, body)
	}
}

// TestImageStreamTagsListPages: tags/list of an image stream with more than
// 100 tags (the upstream's page) lists exactly its tags, page by page
// through the Link, through a real distribution registry.
func TestImageStreamTagsListPages(t *testing.T) {
	e := newStreamEnv(t, envOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want := []string{"latest"}
	push := []remote.Option{remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: robotUser, Password: robotPass})}
	src, err := name.ParseReference(e.reg.Host()+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(src, push...)
	if err != nil {
		t.Fatal(err)
	}
	tagAs := func(tg string) {
		ref, err := name.ParseReference(e.reg.Host()+"/"+repo+":"+tg, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Tag(ref.(name.Tag), desc, push...); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 130 {
		tg := fmt.Sprintf("v%03d", i)
		want = append(want, tg)
		tagAs("ci_ci-operator_" + tg)
	}
	for _, tg := range []string{"ci_ci-operator-x_latest", "ci_ci-operatorz_latest", "ci_ci-operator_a_b"} {
		tagAs(tg) // neighbours, and an ambiguous one, that are not ci/ci-operator's tags
	}
	slices.Sort(want)
	e.reg.ResetRequests()

	_, ans, _ := e.login("dana", danaToken, url.Values{"scope": {"repository:ci/ci-operator:pull"}})
	var got []string
	next, pages := "/v2/ci/ci-operator/tags/list?n=50", 0
	for next != "" && pages < 10 {
		pages++
		resp, body := e.get(next, ans.Token)
		var list struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if resp.StatusCode != 200 || json.Unmarshal(body, &list) != nil || list.Name != "ci/ci-operator" {
			t.Fatalf("GET %s: %d %s", next, resp.StatusCode, body)
		}
		got = append(got, list.Tags...)
		next = ""
		if link := resp.Header.Get("Link"); link != "" {
			u, err := url.Parse(strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`))
			if err != nil || u.Host != e.host() {
				t.Fatalf("Link %q is not on our host %s", link, e.host())
			}
			next = u.RequestURI()
		}
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages, %d tags; want 3 pages of the 131 tags of ci/ci-operator", pages, len(got))
	}
	for _, r := range e.upstreamSaw() {
		if r.Path == "/v2/"+repo+"/tags/list" && !strings.Contains(r.RawQuery, "last=ci_ci-operator_") {
			t.Errorf("an upstream tags/list did not start at the prefix: %s", r.RawQuery)
		}
	}
	// go-containerregistry follows the Link itself.
	ref, _ := name.NewRepository(e.host()+"/ci/ci-operator", name.Insecure)
	listed, err := remote.List(ref, remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: "dana", Password: danaToken}))
	if err != nil || !slices.Equal(listed, want) {
		t.Errorf("remote.List: %d tags, %v", len(listed), err)
	}
}

// TestClustersFileUsersPullImageStreams: a user of a cluster of
// QCI_CLUSTERS_FILE, authorized by that cluster at login, is granted the
// image streams asked for (as before it had the whole mirror), with no
// review per image stream.
func TestClustersFileUsersPullImageStreams(t *testing.T) {
	e := newTwoClusterEnv(t)
	builder := jwtNaming("https://b.example", "system:serviceaccount:ci:builder")
	e.b.AddToken(builder, clustertest.User{Name: "system:serviceaccount:ci:builder", UID: "uid-builder"}, "https://registry.ci.example.com")
	e.b.Allow("system:serviceaccount:ci:builder")
	resp, ans, body := e.login("builder", builder, url.Values{"scope": {"repository:ci/ci-operator:pull"}})
	if resp.StatusCode != 200 {
		t.Fatalf("B's token for ci/ci-operator: %d %s", resp.StatusCode, body)
	}
	if r, b := e.get("/v2/ci/ci-operator/manifests/latest", ans.Token); r.StatusCode != 200 || r.Header.Get("Docker-Content-Digest") != digestOf(t, e.img).String() {
		t.Errorf("pull ci/ci-operator:latest: %d %s", r.StatusCode, b)
	}
	if n := len(e.b.SubjectAccessReviews()); n != 1 {
		t.Errorf("%d reviews at B; want only the login's", n)
	}
	other := jwtNaming("https://b.example", "system:serviceaccount:ci:other")
	e.b.AddToken(other, clustertest.User{Name: "system:serviceaccount:ci:other"}, "https://registry.ci.example.com")
	if resp, _, _ := e.login("other", other, url.Values{"scope": {"repository:ci/ci-operator:pull"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("B's user that B does not authorize: %d, want 403", resp.StatusCode)
	}
}
