package function_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/function/config"
)

// TestWarmManifestCachePull: with the digest manifest cache on (the
// default), a second pull of an image by digest with a real client asks
// the upstream for no manifest; with QCI_MANIFEST_CACHE_BYTES=0 it does.
func TestWarmManifestCachePull(t *testing.T) {
	for _, tc := range []struct {
		name     string
		bytes    int64
		upstream int // manifest requests of the second pull
	}{{"default", config.Defaults().ManifestCacheBytes.N, 0}, {"off", 0, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOptions{noCluster: true, configure: func(c *config.Config) {
				c.ManifestCacheBytes = config.NewByteSize(tc.bytes)
			}})
			d, _ := e.img.Digest()
			ref, err := name.ParseReference(e.host()+"/"+repo+"@"+d.String(), name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			auth := remote.WithAuth(&authn.Basic{Username: robotUser, Password: robotPass})
			manifestGets := func() int {
				n := 0
				for _, r := range e.upstreamSaw() {
					if strings.Contains(r.Path, "/manifests/") && r.Method == http.MethodGet {
						n++
					}
				}
				return n
			}
			for i := range 2 {
				before := manifestGets()
				img, err := remote.Image(ref, auth)
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := img.Digest(); got != d {
					t.Fatalf("pull %d: digest %s, want %s", i, got, d)
				}
				if _, err := img.ConfigFile(); err != nil {
					t.Fatal(err)
				}
				if n := manifestGets() - before; i == 1 && n != tc.upstream {
					t.Errorf("second pull: %d manifest GETs upstream, want %d", n, tc.upstream)
				}
			}
		})
	}
}
