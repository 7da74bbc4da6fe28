package function_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
)

// TestPullWithGoContainerRegistry pulls through the function with a real
// client: it follows the challenge, logs in, and checks every digest.
func TestPullWithGoContainerRegistry(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, err := name.ParseReference(e.host()+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	for who, auth := range map[string]authn.Authenticator{
		"robot": &authn.Basic{Username: robotUser, Password: robotPass},
		"alice": &authn.Basic{Username: "alice", Password: aliceToken},
	} {
		img, err := remote.Image(ref, remote.WithAuth(auth))
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		got, _ := img.Digest()
		want, _ := e.img.Digest()
		if got != want {
			t.Errorf("%s: manifest digest %s, want %s", who, got, want)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			d, _ := l.Digest()
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			if _, err := io.Copy(h, rc); err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if "sha256:"+hex.EncodeToString(h.Sum(nil)) != d.String() {
				t.Errorf("%s: layer %s has another digest", who, d)
			}
		}
		tags, err := remote.List(ref.Context(), remote.WithAuth(auth))
		if err != nil || len(tags) != 1 || tags[0] != tag {
			t.Errorf("%s: tags %v %v", who, tags, err)
		}
	}
	e.assertOnlyRobotTokenUpstream()
	if len(e.upstreamSaw()) == 0 {
		t.Error("the upstream saw no registry request")
	}
}

func TestRangeAndConditionalRequestsPass(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	tok := e.pullToken()
	layers, _ := e.img.Layers()
	d, _ := layers[0].Digest()
	rc, _ := layers[0].Compressed()
	full, _ := io.ReadAll(rc)
	h := http.Header{"Authorization": {"Bearer " + tok}, "Range": {"bytes=10-19"}}
	resp, body := e.do(http.MethodGet, "/v2/openshift/ci/blobs/"+d.String(), h, nil)
	if resp.StatusCode != http.StatusPartialContent || string(body) != string(full[10:20]) {
		t.Errorf("range: %d %d bytes", resp.StatusCode, len(body))
	}
	// HEAD of a manifest gives its digest and no body.
	mh := http.Header{"Authorization": {"Bearer " + tok}, "Accept": {"application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json"}}
	resp, body = e.do(http.MethodHead, "/v2/openshift/ci/manifests/"+tag, mh, nil)
	want, _ := e.img.Digest()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != want.String() || len(body) != 0 {
		t.Errorf("HEAD manifest: %d %q %d bytes", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"), len(body))
	}
	mh.Set("If-None-Match", `"`+want.String()+`"`)
	resp, _ = e.do(http.MethodGet, "/v2/openshift/ci/manifests/"+tag, mh, nil)
	if resp.StatusCode != http.StatusNotModified && resp.StatusCode != http.StatusOK {
		t.Errorf("If-None-Match: %d", resp.StatusCode)
	}
	for _, r := range e.upstreamSaw() {
		if strings.Contains(r.Path, "/blobs/") && r.Header.Get("Range") != "bytes=10-19" {
			t.Errorf("upstream blob request lost Range: %v", r.Header)
		}
	}
	// Upstream answers pass through: an unknown tag is the upstream's 404.
	resp, body = e.get("/v2/openshift/ci/manifests/no-such-tag", tok)
	if resp.StatusCode != 404 || registryError(t, resp, body) != "MANIFEST_UNKNOWN" || resp.Header.Get("WWW-Authenticate") != "" {
		t.Errorf("unknown tag: %d %s", resp.StatusCode, body)
	}
}

// standIn is an upstream that needs no token (its /v2/ answers 200) and
// misbehaves on purpose, for what a real registry will not do on demand.
func standIn(t testing.TB, h http.HandlerFunc) (*httptest.Server, http.Handler) {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			_, _ = io.WriteString(w, "{}")
			return
		}
		h(w, r)
	}))
	t.Cleanup(up.Close)
	cfg := config.Defaults()
	cfg.UpstreamURL = up.URL
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	cfg.SigningKey = "0123456789abcdef0123456789abcdef"
	cfg.Logger = slog.New(slog.DiscardHandler)
	fn, err := function.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return up, fn
}

func robotToken(t testing.TB, srv *httptest.Server) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/auth?scope=repository:openshift/ci:pull", nil)
	req.SetBasicAuth(robotUser, robotPass)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	tok, _, _ := strings.Cut(strings.TrimPrefix(string(b), `{"token":"`), `"`)
	return tok
}

func TestBrokenUpstreamBodyAbortsTheClient(t *testing.T) {
	// With and without a Content-Length, blob and manifest: all must abort.
	for _, c := range []struct {
		path    string
		chunked bool
	}{
		{"/v2/openshift/ci/blobs/sha256:" + strings.Repeat("a", 64), false},
		{"/v2/openshift/ci/blobs/sha256:" + strings.Repeat("a", 64), true},
		{"/v2/openshift/ci/manifests/latest", false},
		{"/v2/openshift/ci/manifests/latest", true},
	} {
		chunked := c.chunked
		t.Run(fmt.Sprintf("%s chunked=%v", c.path[len("/v2/openshift/ci/"):len("/v2/openshift/ci/")+5], chunked), func(t *testing.T) {
			_, fn := standIn(t, func(w http.ResponseWriter, r *http.Request) {
				if !chunked {
					w.Header().Set("Content-Length", "1048576")
				}
				w.WriteHeader(200)
				_, _ = w.Write(make([]byte, 100<<10))
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler) // the upstream dies mid-body
			})
			srv := httptest.NewServer(fn)
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
			req.Header.Set("Authorization", "Bearer "+robotToken(t, srv))
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Errorf("client read %d bytes and a clean end of a broken body", n)
			} else if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("client error: %v", err)
			}
		})
	}
}

func TestUpstreamHeadersAndRedirects(t *testing.T) {
	var gotAuth, gotCookie, gotHost atomic.Value
	up, fn := standIn(t, nil)
	up.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			_, _ = io.WriteString(w, "{}")
			return
		}
		gotAuth.Store(r.Header.Get("Authorization"))
		gotCookie.Store(r.Header.Get("Cookie"))
		gotHost.Store(r.Host)
		w.Header().Set("WWW-Authenticate", `Bearer realm="https://upstream.example/auth"`)
		w.Header().Set("Set-Cookie", "upstream=session")
		switch {
		case strings.HasSuffix(r.URL.Path, "/own"):
			w.Header().Set("Location", "http://"+r.Host+"/v2/openshift/ci/blobs/sha256:"+strings.Repeat("b", 64)+"?x=1")
			w.WriteHeader(http.StatusTemporaryRedirect)
		case strings.HasSuffix(r.URL.Path, strings.Repeat("c", 64)):
			w.Header().Set("Location", "https://storage.example.com/blob?X-Amz-Signature=abc")
			w.WriteHeader(http.StatusTemporaryRedirect)
		default:
			w.WriteHeader(http.StatusTooManyRequests)
		}
	})
	srv := httptest.NewServer(fn)
	defer srv.Close()
	tok := robotToken(t, srv)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(p string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+p, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Cookie", "session=client")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	upURL, _ := url.Parse(up.URL)
	resp := get("/v2/openshift/ci/manifests/own")
	if loc := resp.Header.Get("Location"); resp.StatusCode != 307 || loc != srv.URL+"/v2/openshift/ci/blobs/sha256:"+strings.Repeat("b", 64)+"?x=1" {
		t.Errorf("redirect on the upstream's host: %d %q, want it on ours", resp.StatusCode, loc)
	}
	if gotAuth.Load() != "" || gotCookie.Load() != "" || gotHost.Load() != upURL.Host {
		t.Errorf("upstream saw Authorization %q Cookie %q Host %q", gotAuth.Load(), gotCookie.Load(), gotHost.Load())
	}
	resp = get("/v2/openshift/ci/blobs/sha256:" + strings.Repeat("c", 64))
	if loc := resp.Header.Get("Location"); resp.StatusCode != 307 || loc != "https://storage.example.com/blob?X-Amz-Signature=abc" {
		t.Errorf("storage redirect: %d %q, want it unchanged", resp.StatusCode, loc)
	}
	resp = get("/v2/openshift/ci/manifests/latest")
	if resp.StatusCode != 429 {
		t.Errorf("429 did not pass through: %d", resp.StatusCode)
	}
	if resp.Header.Get("WWW-Authenticate") != "" || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("the upstream's challenge or cookie reached the client: %v", resp.Header)
	}
}
