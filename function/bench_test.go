package function_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
)

// BenchmarkManifestGET measures one proxied manifest GET through the
// handler, against an upstream that needs no token; compare it with
// BenchmarkManifestGETDirect, the same GET straight to the upstream.
func BenchmarkManifestGET(b *testing.B) {
	up, fn := benchSetup(b)
	px := httptest.NewServer(fn)
	defer px.Close()
	tok := robotTokenFor(b, px)
	benchGets(b, px.URL, tok)
	_ = up
}

func BenchmarkManifestGETDirect(b *testing.B) {
	up, _ := benchSetup(b)
	benchGets(b, up.URL, "")
}

func benchSetup(b *testing.B) (*httptest.Server, http.Handler) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", "sha256:0000000000000000000000000000000000000000000000000000000000000000")
		_, _ = w.Write(manifest)
	}))
	b.Cleanup(up.Close)
	cfg := config.Defaults()
	cfg.UpstreamURL = up.URL
	cfg.RobotUsername, cfg.RobotPassword = robotUser, robotPass
	cfg.SigningKey = "0123456789abcdef0123456789abcdef"
	cfg.Logger = slog.New(slog.DiscardHandler)
	fn, err := function.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return up, fn
}

func robotTokenFor(b *testing.B, srv *httptest.Server) string {
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/auth?scope=repository:openshift/ci:pull", nil)
	req.SetBasicAuth(robotUser, robotPass)
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var ans tokenAnswer
	if err := jsonDecode(resp.Body, &ans); err != nil {
		b.Fatal(err)
	}
	return ans.Token
}

func benchGets(b *testing.B, base, tok string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/openshift/ci/manifests/latest", nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
