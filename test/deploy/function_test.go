package deploy_test

import (
	"fmt"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
	"github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/test/proxyproc"
)

// TestMain doubles as the Functions Framework's process when the test
// re-executes itself with QCI_TEST_SERVE_FUNCTION set: it registers the
// function as the staged Cloud Functions source does.
func TestMain(m *testing.M) {
	if port := os.Getenv("QCI_TEST_SERVE_FUNCTION"); port != "" {
		functions.HTTP(function.EntryPoint, function.NewFromEnv().ServeHTTP)
		if err := funcframework.StartHostPort("127.0.0.1", port); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestCloudFunctionsEntryPoint serves the function as Cloud Functions does
// (FUNCTION_TARGET=QCIAppCI through funcframework) and checks it answers.
func TestCloudFunctionsEntryPoint(t *testing.T) {
	port := strconv.Itoa(proxyproc.FreePort(t))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(functionEnv(port), "QCI_TEST_SERVE_FUNCTION="+port)
	checkServesFunction(t, cmd, port)
}

// TestCloudFunctionsSource builds what `make gcf-source` stages the way the
// Cloud Functions Go buildpack builds a declarative function: it reads the
// package at the source root, which must import the Functions Framework,
// and compiles a main that imports that package and starts funcframework.
func TestCloudFunctionsSource(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	mk := exec.Command("make", "-s", "gcf-source", "GCF_SOURCE="+src)
	mk.Dir = filepath.Join("..", "..")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make gcf-source: %v\n%s", err, out)
	}
	// The buildpack's package extraction: the root's Go files.
	files, _ := filepath.Glob(filepath.Join(src, "*.go"))
	names := map[string]bool{}
	imports := map[string]bool{}
	for _, path := range files {
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		names[f.Name.Name] = true
		for _, imp := range f.Imports {
			imports[strings.Trim(imp.Path.Value, `"`)] = true
		}
	}
	if len(names) != 1 {
		t.Fatalf("root of the staged source: packages %v, want one", names)
	}
	if !imports["github.com/GoogleCloudPlatform/functions-framework-go/functions"] {
		t.Fatalf("the root package does not import the Functions Framework: the buildpack would not use its declarative main")
	}
	// The buildpack's app module: requires the function's module through a
	// replace, and a main from its declarative template.
	app := filepath.Join(dir, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	appMod := strings.Replace(string(mod), "module github.com/qci-appci/qci-appci", "module serverless_function_app", 1) +
		"\nrequire github.com/qci-appci/qci-appci v0.0.0\n\nreplace github.com/qci-appci/qci-appci v0.0.0 => " + src + "\n"
	sum, err := os.ReadFile(filepath.Join(src, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"go.mod": appMod, "go.sum": string(sum), "main.go": declarativeMain} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "function")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = app
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the buildpack's main: %v\n%s", err, out)
	}
	port := strconv.Itoa(proxyproc.FreePort(t))
	cmd := exec.Command(bin)
	cmd.Env = append(functionEnv(port), "PORT="+port)
	checkServesFunction(t, cmd, port)
}

// declarativeMain is the main that the Cloud Functions Go buildpack
// generates for a function that registers itself with the framework.
const declarativeMain = `package main

import (
	"log"
	"net/http"
	"os"

	_ "github.com/qci-appci/qci-appci"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	http.HandleFunc("/robots.txt", http.NotFound)
	http.HandleFunc("/favicon.ico", http.NotFound)
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("Function failed to start: %v\n", err)
	}
}
`

// functionEnv is the environment of a function serving on port.
func functionEnv(port string) []string {
	return append(os.Environ(),
		"FUNCTION_TARGET=QCIAppCI",
		"QCI_ROBOT_USERNAME=robot", "QCI_ROBOT_PASSWORD=robot-password",
		"QCI_SIGNING_KEY=0123456789abcdef0123456789abcdef",
		"QCI_KUBECONFIG=")
}

// checkServesFunction starts cmd, which serves the function on port, and
// checks that /v2/ challenges and the robot logs in.
func checkServesFunction(t *testing.T, cmd *exec.Cmd, port string) {
	t.Helper()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := "http://127.0.0.1:" + port
	var resp *http.Response
	var err error
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = http.Get(base + "/v2/")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the function did not come up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="http://127.0.0.1:`+port+`/v2/auth"`) {
		t.Errorf("GET /v2/: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/v2/auth", nil)
	req.SetBasicAuth("robot", "robot-password")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("robot login through the framework: %d", resp.StatusCode)
	}
}

// TestProductionBinaryHasNoTestModules builds cmd/qci-appci as the image
// does and checks that no test- or deploy-only module is linked in, nor the
// Functions Framework and the CloudEvents SDK, which only the staged Cloud
// Functions source needs.
func TestProductionBinaryHasNoTestModules(t *testing.T) {
	bin := t.TempDir() + "/qci-appci"
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "github.com/qci-appci/qci-appci/cmd/qci-appci")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	for _, banned := range []string{"knative.dev/", "github.com/hashicorp/hcl", "github.com/distribution/distribution",
		"github.com/google/go-containerregistry", "k8s.io/kubernetes",
		"github.com/GoogleCloudPlatform/functions-framework-go", "github.com/cloudevents/sdk-go"} {
		if strings.Contains(string(out), banned) {
			t.Errorf("the production binary links %s", banned)
		}
	}
	for _, want := range []string{"k8s.io/client-go", "github.com/golang-jwt/jwt/v5"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the production binary does not link %s", want)
		}
	}
}
