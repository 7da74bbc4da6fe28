package function_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkManifestGET measures one proxied manifest GET through the
// handler, against an upstream that needs no token; compare it with
// BenchmarkManifestGETDirect, the same GET straight to the upstream.
func BenchmarkManifestGET(b *testing.B) {
	up, fn := benchSetup(b)
	px := httptest.NewServer(fn)
	defer px.Close()
	tok := robotToken(b, px)
	benchGets(b, px.URL, tok)
	_ = up
}

func BenchmarkManifestGETDirect(b *testing.B) {
	up, _ := benchSetup(b)
	benchGets(b, up.URL, "")
}

func benchSetup(b *testing.B) (*httptest.Server, http.Handler) {
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`)
	return standIn(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", "sha256:0000000000000000000000000000000000000000000000000000000000000000")
		_, _ = w.Write(manifest)
	})
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
