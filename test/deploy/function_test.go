package deploy_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	// Registers QCIAppCI with the Functions Framework, as a Cloud Functions
	// (gen2) build of this module does.
	_ "github.com/qci-appci/qci-appci/function"
)

// TestMain doubles as the Functions Framework's process when the test
// re-executes itself with QCI_TEST_SERVE_FUNCTION set.
func TestMain(m *testing.M) {
	if port := os.Getenv("QCI_TEST_SERVE_FUNCTION"); port != "" {
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"QCI_TEST_SERVE_FUNCTION="+port,
		"FUNCTION_TARGET=QCIAppCI",
		"QCI_ROBOT_USERNAME=robot", "QCI_ROBOT_PASSWORD=robot-password",
		"QCI_SIGNING_KEY=0123456789abcdef0123456789abcdef",
		"QCI_KUBECONFIG=")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	base := "http://127.0.0.1:" + port
	var resp *http.Response
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
// does and checks that no test- or deploy-only module is linked in.
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
		"github.com/google/go-containerregistry", "k8s.io/kubernetes"} {
		if strings.Contains(string(out), banned) {
			t.Errorf("the production binary links %s", banned)
		}
	}
	for _, want := range []string{"k8s.io/client-go", "github.com/golang-jwt/jwt/v5", "github.com/GoogleCloudPlatform/functions-framework-go"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the production binary does not link %s", want)
		}
	}
}
