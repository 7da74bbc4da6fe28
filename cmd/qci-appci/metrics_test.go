package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/qci-appci/qci-appci/test/clustertest"
	"github.com/qci-appci/qci-appci/test/proxyproc"
	"github.com/qci-appci/qci-appci/test/registrytest"
)

const (
	repo       = "openshift/ci"
	robotUser  = "openshift+ci_robot"
	robotPass  = "robot-password"
	signingKey = "0123456789abcdef0123456789abcdef-metrics"
	aliceToken = "alice-cluster-token"
	eveToken   = "eve-cluster-token"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qci-appci-metrics-")
	if err != nil {
		panic(err)
	}
	if binary, err = proxyproc.Build(dir); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestMetricsAfterLoginsAndAPull runs the real binary with its metrics on
// a port of their own, logs in as the robot and as cluster users (allowed,
// allowed again from the cache, denied, wrong password), pulls an image
// (manifest and every blob), then scrapes /metrics and checks each count.
func TestMetricsAfterLoginsAndAPull(t *testing.T) {
	reg, err := registrytest.Start(registrytest.Options{Repository: repo, Username: robotUser, Password: robotPass})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	img, err := reg.PushRandomImage(ctx, "ci_ci-operator_latest", 2, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := clustertest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	cl.AddToken(aliceToken, clustertest.User{Name: "alice", UID: "uid-alice", Groups: []string{"system:authenticated"}})
	cl.AddToken(eveToken, clustertest.User{Name: "eve", UID: "uid-eve", Groups: []string{"system:authenticated"}})
	cl.Allow("alice")
	kc, err := cl.WriteKubeconfig(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	metricsPort := proxyproc.FreePort(t)
	p := proxyproc.Start(t, binary, map[string]string{
		"QCI_UPSTREAM_URL":   reg.URL(),
		"QCI_ROBOT_USERNAME": robotUser,
		"QCI_ROBOT_PASSWORD": robotPass,
		"QCI_SIGNING_KEY":    signingKey,
		"QCI_KUBECONFIG":     kc,
		"QCI_METRICS_PORT":   strconv.Itoa(metricsPort),
	})

	// Logins.
	scope := "?scope=repository:" + repo + ":pull"
	token := login(t, p.URL+"/v2/auth"+scope, robotUser, robotPass, http.StatusOK)
	login(t, p.URL+"/v2/auth"+scope, robotUser, "wrong", http.StatusUnauthorized)
	login(t, p.URL+"/v2/auth"+scope, "alice", aliceToken, http.StatusOK)
	login(t, p.URL+"/v2/auth"+scope, "alice", aliceToken, http.StatusOK) // from the review cache
	login(t, p.URL+"/v2/auth"+scope, "eve", eveToken, http.StatusForbidden)

	// A pull: /v2/ without a token, the manifest, every blob.
	get(t, p.URL+"/v2/", "", http.StatusUnauthorized)
	digest, _ := img.Digest()
	get(t, p.URL+"/v2/"+repo+"/manifests/"+digest.String(), token, http.StatusOK)
	cfgName, _ := img.ConfigName()
	blobs := []string{cfgName.String()}
	var blobBytes int64
	cfgRaw, _ := img.RawConfigFile()
	blobBytes += int64(len(cfgRaw))
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		size, _ := l.Size()
		blobs = append(blobs, d.String())
		blobBytes += size
	}
	for _, b := range blobs {
		get(t, p.URL+"/v2/"+repo+"/blobs/"+b, token, http.StatusOK)
	}

	families := scrape(t, "http://127.0.0.1:"+strconv.Itoa(metricsPort)+"/metrics")
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"qci_logins_total", map[string]string{"method": "robot", "result": "ok"}, 1},
		{"qci_logins_total", map[string]string{"method": "robot", "result": "bad_credentials"}, 1},
		{"qci_logins_total", map[string]string{"method": "cluster", "result": "ok"}, 2},
		{"qci_logins_total", map[string]string{"method": "cluster", "result": "denied"}, 1},
		// alice twice and eve: each login's TokenReview and its pull
		// scope's SubjectAccessReview are looked up in the review caches.
		{"qci_review_cache_total", map[string]string{"result": "miss"}, 4},
		{"qci_review_cache_total", map[string]string{"result": "hit"}, 2},
		{"qci_cluster_reviews_total", map[string]string{"cluster": "", "kind": "token_review", "result": "allowed"}, 2},
		{"qci_cluster_reviews_total", map[string]string{"cluster": "", "kind": "subject_access_review", "result": "allowed"}, 1},
		{"qci_cluster_reviews_total", map[string]string{"cluster": "", "kind": "subject_access_review", "result": "denied"}, 1},
		{"qci_http_requests_total", map[string]string{"route": "auth", "method": "GET", "code": "200"}, 3},
		{"qci_http_requests_total", map[string]string{"route": "auth", "method": "GET", "code": "401"}, 1},
		{"qci_http_requests_total", map[string]string{"route": "auth", "method": "GET", "code": "403"}, 1},
		{"qci_http_requests_total", map[string]string{"route": "base", "method": "GET", "code": "401"}, 1},
		{"qci_http_requests_total", map[string]string{"route": "manifest", "method": "GET", "code": "200"}, 1},
		{"qci_http_requests_total", map[string]string{"route": "blob", "method": "GET", "code": "200"}, float64(len(blobs))},
		{"qci_http_response_bytes_total", map[string]string{"route": "blob"}, float64(blobBytes)},
		{"qci_http_request_duration_seconds", map[string]string{"route": "blob"}, float64(len(blobs))}, // histogram count
		{"qci_http_in_flight_requests", nil, 0},
		{"qci_upstream_requests_total", map[string]string{"code": "200"}, float64(1 + len(blobs))},
		{"qci_upstream_request_duration_seconds", nil, float64(1 + len(blobs))},
		{"qci_upstream_token_fetches_total", map[string]string{"result": "ok"}, 1},
	} {
		if got, ok := value(families, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// The Go and process collectors are registered too.
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := families[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	// No label holds a user, a token, a tag or a digest.
	for name, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, secret := range []string{"alice", "eve", robotUser, "sha256", "ci_ci-operator_latest", aliceToken} {
					if strings.Contains(l.GetValue(), secret) {
						t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	// Metrics are on their own port only.
	get(t, p.URL+"/metrics", "", http.StatusNotFound)
}

// TestMetricsOff checks that QCI_METRICS_PORT=0 serves no metrics.
func TestMetricsOff(t *testing.T) {
	p := proxyproc.Start(t, binary, map[string]string{
		"QCI_ROBOT_USERNAME": robotUser, "QCI_ROBOT_PASSWORD": robotPass, "QCI_SIGNING_KEY": signingKey,
		"QCI_KUBECONFIG": "", "QCI_METRICS_PORT": "0",
	})
	if strings.Contains(p.Logs(), "metrics listening") {
		t.Errorf("metrics served with QCI_METRICS_PORT=0:\n%s", p.Logs())
	}
}

// TestMetricsPortInUse checks that a metrics port already taken fails the
// start with a message naming QCI_METRICS_PORT.
func TestMetricsPortInUse(t *testing.T) {
	// The binary listens on every address, as in a container.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(proxyproc.FreePort(t)),
		"QCI_ROBOT_USERNAME=" + robotUser, "QCI_ROBOT_PASSWORD=" + robotPass, "QCI_SIGNING_KEY=" + signingKey,
		"QCI_METRICS_PORT=" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "QCI_METRICS_PORT") || !strings.Contains(string(out), "address already in use") {
		t.Errorf("started with its metrics port taken: %v\n%s", err, out)
	}
}

func login(t *testing.T, u, user, pass string, want int) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.SetBasicAuth(user, pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("login %s: %d %s, want %d", user, resp.StatusCode, b, want)
	}
	var tok struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	return tok.Token
}

func get(t *testing.T, u, token string, want int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d", u, resp.StatusCode, want)
	}
}

// scrape reads the exposition at u as Prometheus would.
func scrape(t *testing.T, u string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", u, err)
	}
	return families
}

// value is the counter, gauge, or histogram count of the series of name
// with exactly labels.
func value(families map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(labels) {
			continue
		}
		match := true
		for _, l := range m.GetLabel() {
			match = match && labels[l.GetName()] == l.GetValue()
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}
