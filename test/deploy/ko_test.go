package deploy_test

import (
	"archive/tar"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestKoCommandsOfTheReadme runs the README's ko commands as written, with
// KO_DOCKER_REPO naming a registry on loopback and no VERSION: each pushes
// the image there and names it by digest, and the pushed binary knows its
// version.
func TestKoCommandsOfTheReadme(t *testing.T) {
	ko := koPath(t)
	if _, err := exec.LookPath("kubectl"); err != nil {
		msg := "kubectl is not installed: the kustomize command cannot run"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", Config: v1.Config{User: "65532"}})
	if err != nil {
		t.Fatal(err)
	}
	baseRef, _ := name.ParseReference(host+"/distroless-static:nonroot", name.Insecure)
	if err := remote.Write(baseRef, base); err != nil {
		t.Fatal(err)
	}
	// ko and kubectl from PATH, as the README runs them.
	bindir := t.TempDir()
	if err := os.Symlink(ko, filepath.Join(bindir, "ko")); err != nil {
		t.Fatal(err)
	}
	env := append(environWithout("VERSION", "KO_DOCKER_REPO", "KO_DEFAULTBASEIMAGE", "PATH"),
		"PATH="+bindir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KO_DOCKER_REPO="+host+"/qci-appci",
		// Offline: the base from the loopback registry, not gcr.io.
		"KO_DEFAULTBASEIMAGE="+baseRef.String())
	pushed := regexp.MustCompile(regexp.QuoteMeta(host) + `/qci-appci(/qci-appci-[0-9a-f]{32})?(:latest)?@sha256:[0-9a-f]{64}`)

	// As the README gives them; what runs here is the part before kubectl apply.
	for _, command := range []string{
		"ko build --bare ./cmd/qci-appci",
		"ko resolve -f knative/rbac.yaml -f knative/service.yaml -f knative/domainmapping.yaml | kubectl apply -f -",
		"kubectl kustomize knative | ko resolve -f - | kubectl apply -f -",
	} {
		readmeHas(t, command)
		run, _, _ := strings.Cut(command, " | kubectl apply")
		cmd := exec.Command("bash", "-o", "pipefail", "-c", run)
		cmd.Dir = "../.."
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("%s: %v\n%s", run, err, stderr.String())
			continue
		}
		ref := pushed.FindString(string(out))
		if ref == "" {
			t.Errorf("%s: no image pushed to %s named in:\n%s", run, host, out)
			continue
		}
		if strings.Contains(string(out), "ko://") {
			t.Errorf("%s left a ko:// image unresolved:\n%s", run, out)
		}
		if strings.Contains(run, "resolve") {
			for _, kind := range []string{"kind: ServiceAccount", "kind: ClusterRoleBinding", "kind: Service", "kind: DomainMapping"} {
				if !strings.Contains(string(out), kind) {
					t.Errorf("%s: no %s in its output", run, kind)
				}
			}
			if strings.Contains(string(out), "kind: Kustomization") {
				t.Errorf("%s sends the Kustomization to the cluster", run)
			}
		}
		if command == "ko build --bare ./cmd/qci-appci" {
			checkPushedVersion(t, ref)
		}
	}
}

// checkPushedVersion pulls ref, runs its entrypoint with -version, and
// checks that the version was stamped without VERSION set.
func checkPushedVersion(t *testing.T, ref string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil || len(cfg.Config.Entrypoint) != 1 {
		t.Fatalf("image config %+v %v", cfg, err)
	}
	bin := extractFile(t, img, cfg.Config.Entrypoint[0])
	v, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !regexp.MustCompile(`^qci-appci [0-9a-f]{7,}(-dirty)?\n$`).Match(v) {
		t.Errorf("the pushed binary's -version: %q %v (want the git commit ko stamps)", v, err)
	}
}

// extractFile writes the file at path in img's layers to a temporary
// executable and returns its path.
func extractFile(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	want := strings.TrimPrefix(path, "/")
	bin := filepath.Join(t.TempDir(), filepath.Base(path))
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
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
			if strings.TrimPrefix(h.Name, "/") == want {
				f, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.Copy(f, tr)
				f.Close()
				rc.Close()
				if err != nil {
					t.Fatal(err)
				}
				return bin
			}
		}
		rc.Close()
	}
	t.Fatalf("%s is not in the image", path)
	return ""
}
