package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
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

// TestImage builds the image as the README says to build it offline:
// make image with the base image saved as a tarball, served to ko by a
// registry on loopback (nothing is downloaded), with no Docker daemon and
// no KO_DOCKER_REPO or VERSION in the environment. It then inspects the
// image and runs the binary it holds.
func TestImage(t *testing.T) {
	ko := koPath(t)
	readmeHas(t, "make image BASE_IMAGE_TAR=distroless-static.tar")
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		OS: "linux", Architecture: "amd64",
		Config: v1.Config{User: "65532", Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	baseTar := filepath.Join(dir, "distroless-static.tar")
	baseTag, _ := name.NewTag("gcr.io/distroless/static-debian12:nonroot")
	if err := tarball.WriteToFile(baseTar, baseTag, base); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	cmd := exec.Command("make", "-s", "image", "BASE_IMAGE_TAR="+baseTar, "KO="+ko, "IMAGE_TAR="+out)
	cmd.Dir = "../.."
	// No daemon to talk to, even if ko tried.
	cmd.Env = append(environWithout("KO_DOCKER_REPO", "VERSION", "KO_DEFAULTBASEIMAGE", "DOCKER_HOST"),
		"DOCKER_HOST=unix://"+filepath.Join(dir, "no-docker.sock"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, b)
	}
	tag, _ := name.NewTag("localhost/qci-appci:latest")
	if _, err := tarball.ImageFromPath(out, &tag); err != nil {
		t.Errorf("the tarball holds no image tagged %s: %v", tag, err)
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
	bin := extractFile(t, img, cfg.Config.Entrypoint[0]) // fails the test when the entrypoint is not in the image
	v, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(v), "qci-appci ") || strings.TrimSpace(string(v)) == "qci-appci" {
		t.Errorf("the image's binary: %q %v", v, err)
	}
	if mods, _ := exec.Command("go", "version", "-m", bin).CombinedOutput(); !strings.Contains(string(mods), "CGO_ENABLED=0") || !strings.Contains(string(mods), "-trimpath") {
		t.Errorf("the image's binary is not static and trimmed:\n%s", mods)
	}
}

// TestImageRefusesADaemonRepository checks that make image will not name
// its image under ko.local, which makes ko load it into a Docker daemon.
func TestImageRefusesADaemonRepository(t *testing.T) {
	cmd := exec.Command("make", "-s", "image", "IMAGE_REPO=ko.local/qci-appci", "KO=/nonexistent/ko")
	cmd.Dir = "../.."
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Docker daemon") {
		t.Errorf("make image IMAGE_REPO=ko.local/…: %v\n%s", err, out)
	}
}

// environWithout is the environment minus the named variables.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			env = append(env, kv)
		}
	}
	return env
}

// readmeHas fails unless README.md holds text, so that the commands the
// tests run are the ones the README gives.
func readmeHas(t *testing.T, text string) {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), text) {
		t.Errorf("README.md does not give %q", text)
	}
}
