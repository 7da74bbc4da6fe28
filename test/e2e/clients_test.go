package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/test/clienttools"
)

func pushContent(t *testing.T, w *world) (v1.Image, v1.ImageIndex) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := w.up.PushRandomImage(ctx, tag, 3, 128<<10)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := w.up.PushRandomIndex(ctx, indexTag)
	if err != nil {
		t.Fatal(err)
	}
	w.up.ResetRequests()
	return img, idx
}

func digestOf(t *testing.T, d interface{ Digest() (v1.Hash, error) }) string {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestSkopeo(t *testing.T) {
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	eachUpstream(t, func(t *testing.T, w *world) { testSkopeo(t, w, skopeo) })
}

func testSkopeo(t *testing.T, w *world, skopeo string) {
	img, idx := pushContent(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	authfile := filepath.Join(dir, "auth.json")
	host := w.containersHost()
	ref := "docker://" + host + "/" + repo + ":" + tag

	if out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"login", "--authfile", authfile}, w.tlsArgs(""), []string{"-u", robotUser, "-p", robotPass, host})...); err != nil {
		t.Fatalf("skopeo login: %v\n%s", err, out)
	}
	out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"inspect", "--authfile", authfile}, w.tlsArgs(""), []string{ref})...)
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var inspected struct{ Digest string }
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &inspected); err != nil || inspected.Digest != digestOf(t, img) {
		t.Errorf("inspect digest %q, want %s (%v)", inspected.Digest, digestOf(t, img), err)
	}
	dst := filepath.Join(dir, "image")
	if out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"copy", "--authfile", authfile}, w.tlsArgs("src-"), []string{ref, "dir:" + dst})...); err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		checkFileDigest(t, filepath.Join(dst, d.Hex), d)
	}
	manifest, _ := os.ReadFile(filepath.Join(dst, "manifest.json"))
	if got := "sha256:" + sha256Hex(manifest); got != digestOf(t, img) {
		t.Errorf("copied manifest digest %s, want %s", got, digestOf(t, img))
	}
	// The multi-arch index, every image of it.
	all := filepath.Join(dir, "index")
	if out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"copy", "--all", "--authfile", authfile}, w.tlsArgs("src-"),
		[]string{"docker://" + host + "/" + repo + ":" + indexTag, "dir:" + all})...); err != nil {
		t.Fatalf("skopeo copy --all: %v\n%s", err, out)
	}
	im, _ := idx.IndexManifest()
	for _, m := range im.Manifests {
		if _, err := os.Stat(filepath.Join(all, m.Digest.Hex+".manifest.json")); err != nil {
			t.Errorf("index member %s not copied: %v", m.Digest, err)
		}
	}
	w.assertUpstreamSawOnlyRobotTokens()
	w.assertCDNServed(len(layers) + 1)
	if w.quay != nil {
		// Without the quay CA the copy fails at the CDN, and only there:
		// skopeo verifies the CDN's certificate.
		out, err := clienttools.Run(ctx, "env", slices.Concat([]string{"-u", "SSL_CERT_FILE", skopeo, "copy", "--authfile", authfile},
			w.tlsArgs("src-"), []string{ref, "dir:" + filepath.Join(dir, "untrusted")})...)
		if err == nil || !strings.Contains(out, w.quay.CDNHost()) || !strings.Contains(out, "certificate") {
			t.Errorf("skopeo without the quay CA: %v\n%s", err, out)
		}
	}
}

func TestPodman(t *testing.T) {
	clienttools.NewPodman(t) // skip or fail before starting anything
	eachUpstream(t, testPodman)
}

func testPodman(t *testing.T, w *world) {
	img, _ := pushContent(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	host := w.containersHost()
	ref := host + "/" + repo + ":" + tag
	for _, who := range []struct{ user, pass string }{{robotUser, robotPass}, {"alice", aliceToken}} {
		pm := clienttools.NewPodman(t)
		if out, err := pm.Run(ctx, slices.Concat([]string{"login", "--authfile", pm.Authfile}, w.tlsArgs(""), []string{"-u", who.user, "-p", who.pass, host})...); err != nil {
			t.Fatalf("%s: podman login: %v\n%s", who.user, err, out)
		}
		if out, err := pm.Run(ctx, slices.Concat([]string{"pull", "--authfile", pm.Authfile}, w.tlsArgs(""), []string{ref})...); err != nil {
			t.Fatalf("%s: podman pull: %v\n%s", who.user, err, out)
		}
		out, err := pm.Run(ctx, "image", "inspect", "--format", "{{.Digest}}", ref)
		if err != nil || strings.TrimSpace(out) != digestOf(t, img) {
			t.Errorf("%s: pulled digest %q, want %s (%v)", who.user, strings.TrimSpace(out), digestOf(t, img), err)
		}
		if out, err := pm.Run(ctx, "logout", "--authfile", pm.Authfile, host); err != nil {
			t.Errorf("%s: podman logout: %v\n%s", who.user, err, out)
		}
	}
	w.assertUpstreamSawOnlyRobotTokens()
	w.assertCDNServed(4)

	// A denied cluster user: a clear error, no image, nothing upstream.
	w.up.ResetRequests()
	pm := clienttools.NewPodman(t)
	// podman login names no repository, so it needs only a valid cluster
	// token; the denial shows at the pull, with the repository named.
	out, err := pm.Run(ctx, slices.Concat([]string{"login", "--authfile", pm.Authfile}, w.tlsArgs(""), []string{"-u", "bob", "-p", bobToken, host})...)
	if err != nil {
		t.Errorf("login of a valid cluster token: %v\n%s", err, out)
	}
	out, err = pm.Run(ctx, slices.Concat([]string{"pull", "--authfile", pm.Authfile}, w.tlsArgs(""), []string{ref})...)
	if err == nil || !strings.Contains(out, "403") {
		t.Errorf("denied pull: %v\n%s; want a 403", err, out)
	}
	if out, _ := pm.Run(ctx, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("a denied user has images: %q", out)
	}
	for _, r := range w.up.requests() {
		if strings.HasPrefix(r.Path, "/v2/"+repo) {
			t.Errorf("the upstream saw %s %s for a denied user", r.Method, r.Path)
		}
	}
}

// TestGoContainerRegistry: crane's calls (remote.Image by tag and digest
// with every layer read and its digest verified, remote.Head, remote.List)
// and a Range resume, over HTTP/1.1 and h2c, behind each upstream.
func TestGoContainerRegistry(t *testing.T) {
	eachUpstream(t, func(t *testing.T, w *world) {
		img, _ := pushContent(t, w)
		eachProtocol(t, w, func(t *testing.T, c *http.Client) { testGoContainerRegistry(t, w, c, img) })
	})
}

func testGoContainerRegistry(t *testing.T, w *world, c *http.Client, img v1.Image) {
	opts := []remote.Option{remote.WithTransport(c.Transport), remote.WithAuth(&authn.Basic{Username: "alice", Password: aliceToken})}
	byTag, err := name.ParseReference(w.proxy.Host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(byTag, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Errorf("by tag: %s, want %s", digestOf(t, got), digestOf(t, img))
	}
	pullLayers(t, got)
	byDigest, _ := name.ParseReference(w.proxy.Host+"/"+repo+"@"+digestOf(t, img), name.Insecure)
	if got, err := remote.Image(byDigest, opts...); err != nil || digestOf(t, got) != digestOf(t, img) {
		t.Errorf("by digest: %v", err)
	}
	desc, err := remote.Head(byTag, opts...)
	if err != nil || desc.Digest.String() != digestOf(t, img) {
		t.Errorf("HEAD: %v %v", desc, err)
	}
	tags, err := remote.List(byTag.Context(), opts...)
	if err != nil || strings.Join(tags, ",") != tag+","+indexTag {
		t.Errorf("tags %v %v", tags, err)
	}
	// Resume a blob with Range, as a client does after a broken download.
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	full, _ := io.ReadAll(rc)
	tok := login(t, c, w, "alice", aliceToken)
	req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+d.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Range", "bytes=1000-")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(rest) != string(full[1000:]) {
		t.Errorf("range resume: %d, %d bytes of %d", resp.StatusCode, len(rest), len(full)-1000)
	}
	w.assertUpstreamSawOnlyRobotTokens(tok)
	w.assertCDNServed(len(layers) + 2)
}

// pullLayers reads the config and every layer of img, as a pull does;
// go-containerregistry checks each digest as it reads.
func pullLayers(t *testing.T, img v1.Image) {
	t.Helper()
	if _, err := img.ConfigFile(); err != nil {
		t.Errorf("config: %v", err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer %s: %v", want, err)
		}
		if err := rc.Close(); err != nil {
			t.Errorf("layer %s: %v", want, err)
		}
	}
}

// login fetches an access token for pull with Basic credentials.
func login(t *testing.T, c *http.Client, w *world, user, pass string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+"/v2/auth?scope=repository:"+repo+":pull&service="+w.proxy.Host, nil)
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != 200 {
		t.Fatalf("login %s: %d %v", user, resp.StatusCode, err)
	}
	return ans.Token
}

func TestContainerdAndDockerTokenFlows(t *testing.T) {
	eachUpstream(t, func(t *testing.T, w *world) {
		pushContent(t, w)
		eachProtocol(t, w, func(t *testing.T, c *http.Client) { testTokenFlows(t, w, c) })
	})
}

func testTokenFlows(t *testing.T, w *world, c *http.Client) {
	postForm := func(form url.Values) (int, map[string]any) {
		resp, err := c.PostForm(w.proxy.URL+"/v2/auth", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	// containerd: POST grant_type=password, later grant_type=refresh_token.
	status, ans := postForm(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {aliceToken},
		"service": {w.proxy.Host}, "scope": {"repository:" + repo + ":pull"}, "client_id": {"containerd-client"}})
	refresh, _ := ans["refresh_token"].(string)
	if status != 200 || refresh == "" || ans["expires_in"].(float64) < 60 {
		t.Fatalf("password grant: %d %v", status, ans)
	}
	status, ans = postForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh},
		"service": {w.proxy.Host}, "scope": {"repository:" + repo + ":pull"}, "client_id": {"containerd-client"}})
	access, _ := ans["access_token"].(string)
	if status != 200 || access == "" {
		t.Fatalf("refresh grant: %d %v", status, ans)
	}
	req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+"/v2/"+repo+"/manifests/"+tag, nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("manifest with the refreshed token: %d", resp.StatusCode)
	}
	// docker: GET with offline_token=true&client_id=docker keeps a refresh token.
	req, _ = http.NewRequest(http.MethodGet, w.proxy.URL+"/v2/auth?account=openshift%2Bci_robot&client_id=docker&offline_token=true&service="+w.proxy.Host, nil)
	req.SetBasicAuth(robotUser, robotPass)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var docker map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&docker)
	resp.Body.Close()
	if resp.StatusCode != 200 || docker["refresh_token"] == nil {
		t.Errorf("docker offline token: %d %v", resp.StatusCode, docker)
	}
	w.assertUpstreamSawOnlyRobotTokens(refresh, access)
}

// TestPullSecret uses a .dockerconfigjson, as kubelet/CRI uses an imagePullSecret.
func TestPullSecret(t *testing.T) {
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	eachUpstream(t, func(t *testing.T, w *world) { testPullSecret(t, w, skopeo) })
}

func testPullSecret(t *testing.T, w *world, skopeo string) {
	img, _ := pushContent(t, w)
	host := w.containersHost()
	cfg := map[string]any{"auths": map[string]any{host: map[string]string{
		"username": robotUser, "password": robotPass,
		"auth": base64.StdEncoding.EncodeToString([]byte(robotUser + ":" + robotPass)),
	}}}
	b, _ := json.Marshal(cfg)
	authfile := filepath.Join(t.TempDir(), ".dockerconfigjson")
	if err := os.WriteFile(authfile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"inspect", "--raw", "--authfile", authfile}, w.tlsArgs(""), []string{"docker://" + host + "/" + repo + ":" + tag})...)
	if err != nil {
		t.Fatalf("skopeo with a pull secret: %v\n%s", err, out)
	}
	if got := "sha256:" + sha256Hex([]byte(out)); got != digestOf(t, img) {
		t.Errorf("raw manifest digest %s, want %s", got, digestOf(t, img))
	}
	w.assertUpstreamSawOnlyRobotTokens()
}
