package deploy_test

import (
	"archive/tar"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// koPath finds ko: $KO, .cache/bin/ko (make image installs it), or PATH.
func koPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("KO"), "../../.cache/bin/ko"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				abs, _ := filepath.Abs(p)
				return abs
			}
		}
	}
	if p, err := exec.LookPath("ko"); err == nil {
		return p
	}
	msg := "ko is not installed: make ko (go install github.com/google/ko at the Makefile's pinned version)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// TestImage builds the image as make image does, on a base image served by
// a registry on loopback (nothing is downloaded), then inspects it and runs
// the binary it holds.
func TestImage(t *testing.T) {
	ko := koPath(t)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: "amd64",
		Config: v1.Config{User: "65532", Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	baseRef, _ := name.ParseReference(host+"/distroless-static:nonroot", name.Insecure)
	if err := remote.Write(baseRef, base); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "image.tar")
	cmd := exec.Command("make", "-s", "image", "KO="+ko, "IMAGE_TAR="+out)
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "KO_DEFAULTBASEIMAGE="+baseRef.String(), "KO_DOCKER_REPO=example.com/qci-appci")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	img, err := tarball.ImageFromPath(out, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532" || len(cfg.Config.Entrypoint) != 1 || cfg.OS != "linux" {
		t.Errorf("image config %+v", cfg.Config)
	}
	entry := strings.TrimPrefix(cfg.Config.Entrypoint[0], "/")
	bin := filepath.Join(t.TempDir(), "qci-appci")
	layers, _ := img.Layers()
	found := false
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			if strings.TrimPrefix(h.Name, "/") == entry {
				f, _ := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
				_, _ = io.Copy(f, tr)
				f.Close()
				found = true
			}
		}
		rc.Close()
	}
	if !found {
		t.Fatalf("entrypoint %s not in the image", entry)
	}
	v, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "qci-appci ") {
		t.Errorf("the image's binary: %q %v", v, err)
	}
	if mods, _ := exec.Command("go", "version", "-m", bin).CombinedOutput(); !strings.Contains(string(mods), "CGO_ENABLED=0") || !strings.Contains(string(mods), "-trimpath") {
		t.Errorf("the image's binary is not static and trimmed:\n%s", mods)
	}
}
