package deploy_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/modfile"

	"github.com/qci-appci/qci-appci/test/proxyproc"
)

// TestMakeHelp runs make help as a user does: every description with its
// variables expanded, the descriptions in one column.
func TestMakeHelp(t *testing.T) {
	cmd := exec.Command("make", "-s", "help")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("make help: %v", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) < 10 {
		t.Fatalf("make help lists %d targets:\n%s", len(lines), out)
	}
	column := -1
	row := regexp.MustCompile(`^  make ([a-z][a-z0-9-]*) +(\S)`)
	for _, l := range lines {
		if strings.Contains(l, "$(") || strings.Contains(l, "${") {
			t.Errorf("unexpanded variable: %q", l)
		}
		m := row.FindStringSubmatchIndex(l)
		if m == nil {
			t.Errorf("not a target row: %q", l)
			continue
		}
		if column == -1 {
			column = m[4]
		}
		if m[4] != column {
			t.Errorf("description at column %d, not %d: %q", m[4], column, l)
		}
	}
	if !strings.Contains(string(out), "on :8080,") {
		t.Errorf("make run's description does not show the port:\n%s", out)
	}
}

// TestHelpFlagPointsAtTheConfiguration runs bin/qci-appci -h: it exits 0
// and names the README's configuration table, which exists.
func TestHelpFlagPointsAtTheConfiguration(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "qci-appci")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/qci-appci/qci-appci/cmd/qci-appci").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-h").CombinedOutput()
	if err != nil {
		t.Errorf("qci-appci -h: %v", err)
	}
	for _, want := range []string{"README.md", "#configuration", "QCI_ROBOT_USERNAME", "QCI_SIGNING_KEY", "_FILE", "-version"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("qci-appci -h does not mention %s:\n%s", want, out)
		}
	}
	readmeHas(t, "\n## Configuration\n")
}

// TestReadmeStandsAlone checks that the README needs nothing outside the
// repository (the shared folder beside it is not part of a clone).
func TestReadmeStandsAlone(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "../") {
		t.Errorf("README.md links outside the repository: %q", regexp.MustCompile(`[^\s(]*\.\./[^\s)]*`).FindAllString(string(b), -1))
	}
}

// TestCloudFunctionsRuntimeMatchesGoMod checks the README's gcloud
// functions deploy --runtime against go.mod's Go version.
func TestCloudFunctionsRuntimeMatchesGoMod(t *testing.T) {
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	mod, err := modfile.ParseLax("go.mod", b, nil)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(mod.Go.Version, ".")
	want := "--runtime go" + parts[0] + parts[1]
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	runtimes := regexp.MustCompile(`--runtime go[0-9]+`).FindAllString(string(readme), -1)
	if len(runtimes) == 0 {
		t.Fatal("the README gives no --runtime")
	}
	for _, r := range runtimes {
		if r != want {
			t.Errorf("README: %s, but go.mod asks for Go %s (%s)", r, mod.Go.Version, want)
		}
	}
}

// TestMakeRun runs make run as a user does: it prints a banner naming the
// demo and its upstream registry, logs JSON, the skopeo commands it prints
// work as pasted (with no deprecated flag), and Ctrl-C (SIGINT to the
// terminal's process group) stops the demo cleanly, with no error from make.
func TestMakeRun(t *testing.T) {
	if _, err := exec.LookPath("skopeo"); err != nil {
		msg := "skopeo is not installed: the demo's commands cannot be tried"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	port := proxyproc.FreePort(t)
	cmd := exec.Command("make", "-s", "run")
	cmd.Dir = "../.."
	cmd.Env = append(environWithout("PORT", "QCI_ROBOT_USERNAME", "QCI_ROBOT_PASSWORD"), "PORT="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a terminal's foreground group
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	logs := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
		logs <- lines
	}()

	var banner []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		banner = append(banner, sc.Text())
		if strings.Contains(sc.Text(), "Ctrl-C stops it.") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	text := strings.Join(banner, "\n")
	if !strings.Contains(text, "qci-appci demo on http://localhost:"+strconv.Itoa(port)) {
		t.Fatalf("banner:\n%s", text)
	}
	up := regexp.MustCompile(`upstream registry: (http://\S+)`).FindStringSubmatch(text)
	if up == nil {
		t.Fatalf("the banner names no upstream registry address:\n%s", text)
	}
	resp, err := http.Get(up[1] + "/v2/")
	if err != nil {
		t.Fatalf("the upstream the banner names: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("the upstream at %s is not a registry with token auth: %d %q", up[1], resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// The skopeo lines, pasted into a shell with its own auth file.
	home := t.TempDir()
	image := filepath.Join(home, "image")
	var skopeos int
	for _, l := range banner {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "skopeo ") {
			continue
		}
		skopeos++
		l = strings.ReplaceAll(l, "dir:/tmp/qci-demo-image", "dir:"+image)
		sk := exec.Command("bash", "-c", l)
		sk.Env = append(os.Environ(), "HOME="+home, "REGISTRY_AUTH_FILE="+filepath.Join(home, "auth.json"), "XDG_RUNTIME_DIR="+home)
		out, err := sk.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", l, err, out)
		}
		if strings.Contains(strings.ToLower(string(out)), "deprecated") {
			t.Errorf("%s uses a deprecated flag:\n%s", l, out)
		}
	}
	if skopeos != 3 {
		t.Errorf("%d skopeo lines in the banner, want login, inspect and copy", skopeos)
	}
	if _, err := os.Stat(filepath.Join(image, "manifest.json")); err != nil {
		t.Errorf("skopeo copy wrote no image: %v", err)
	}

	// Ctrl-C.
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
		killed = true
	case <-time.After(30 * time.Second):
		t.Fatal("make run did not stop on SIGINT")
	}
	lines := <-logs
	var stopped bool
	for _, l := range lines {
		if strings.HasPrefix(l, "make: ***") {
			t.Errorf("make reports an error: the demo did not exit 0 on SIGINT: %s", l)
			continue
		}
		var entry struct {
			Severity string `json:"severity"`
			Message  string `json:"message"`
		}
		if json.Unmarshal([]byte(l), &entry) != nil || entry.Severity == "" || entry.Message == "" {
			t.Errorf("not a JSON log line with severity and message: %s", l)
		}
		stopped = stopped || entry.Message == "stopped"
	}
	if !stopped {
		t.Errorf("the demo did not log its clean stop:\n%s", strings.Join(lines, "\n"))
	}
	// make itself re-raises the SIGINT it got from the "terminal" once its
	// child has exited (GNU make does so for every recipe); anything else
	// is a failure.
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); err != nil && !(ok && ws.Signaled() && ws.Signal() == syscall.SIGINT) {
		t.Errorf("make run: %v", err)
	}
}
