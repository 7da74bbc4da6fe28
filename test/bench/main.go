// Command bench measures qci-appci against the limit and against what a
// user would pick instead, in one run on this machine: a static upstream
// (nginx serving a blob, a manifest and a token endpoint), that upstream
// directly, nginx as a plain reverse proxy that injects the upstream token,
// and the real qci-appci binary. It writes results.json and a README table.
//
//	go run ./test/bench            # make bench
//	go run ./test/bench -quick     # make bench BENCH_QUICK=1: under 2 minutes
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/token"
)

const (
	repo        = "openshift/ci"
	robotUser   = "bench-robot"
	robotPass   = "bench-robot-password"
	signingKey  = "bench-signing-key-0123456789abcdef0123456789"
	upstreamTok = "static-upstream-token"
)

type options struct {
	quick    bool
	blobSize int64
	out      string
	readme   string
	manifest bool
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "a short run (under 2 minutes) that writes the same file")
	flag.StringVar(&o.out, "out", "test/bench/results.json", "where to write the results")
	flag.StringVar(&o.readme, "readme", "test/bench/README.md", "README whose results table is rewritten; empty: none")
	flag.BoolVar(&o.manifest, "manifest-only", false, "measure only manifest GETs, for profiling; writes no file")
	flag.Parse()
	o.blobSize = 256 << 20
	if o.quick {
		o.blobSize = 64 << 20
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// results is results.json.
type results struct {
	BlobMBpsDirect       float64 `json:"blob_mbps_direct"`
	BlobMBpsNginx        float64 `json:"blob_mbps_nginx"`
	BlobMBpsProxy        float64 `json:"blob_mbps_proxy"`
	BlobRatioDirect      float64 `json:"blob_ratio_direct"`
	BlobMBpsDirect16     float64 `json:"blob_mbps_direct_16"`
	BlobMBpsNginx16      float64 `json:"blob_mbps_nginx_16"`
	BlobMBpsProxy16      float64 `json:"blob_mbps_proxy_16"`
	BlobRatioDirect16    float64 `json:"blob_ratio_direct_16"`
	ManifestRPSDirect    float64 `json:"manifest_rps_direct"`
	ManifestRPSNginx     float64 `json:"manifest_rps_nginx"`
	ManifestRPSProxy     float64 `json:"manifest_rps_proxy"`
	ManifestCPUusProxy   float64 `json:"manifest_cpu_us_proxy"`
	ManifestCPUusNginx   float64 `json:"manifest_cpu_us_nginx"`
	RSSMiB64Streams      float64 `json:"rss_mib_64_streams"`
	ColdStartMsV2        float64 `json:"cold_start_ms_v2"`
	ColdStartMsManifest  float64 `json:"cold_start_ms_manifest"`
	ColdStartMsGoFloor   float64 `json:"cold_start_ms_go_floor"`
	LoginsPerSecond      float64 `json:"logins_per_second"`
	UpstreamTokenFetches int     `json:"upstream_token_fetches_100_cold"`
	BlobSizeMiB          int64   `json:"blob_size_mib"`
	Quick                bool    `json:"quick"`
	Machine              string  `json:"machine"`
	Date                 string  `json:"date"`
	GoVersion            string  `json:"go_version"`
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "qci-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers read it as another user
		return err
	}
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		return errors.New("nginx is not installed: apt-get install -y nginx-light")
	}
	bin := filepath.Join(dir, "qci-appci")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/qci-appci").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	digest, err := writeContent(dir, o.blobSize)
	if err != nil {
		return err
	}
	upPort, ngPort := freePort(), freePort()
	up, err := startNginx(nginx, dir, "upstream", upstreamConf(dir, upPort))
	if err != nil {
		return err
	}
	defer up.stop()
	ng, err := startNginx(nginx, dir, "proxy", proxyConf(dir, ngPort, upPort))
	if err != nil {
		return err
	}
	defer ng.stop()
	upURL := "http://localhost:" + strconv.Itoa(upPort)
	ngURL := "http://localhost:" + strconv.Itoa(ngPort)

	px, err := startProxy(bin, dir, upURL)
	if err != nil {
		return err
	}
	defer px.stop()

	r := results{Quick: o.quick, BlobSizeMiB: o.blobSize >> 20, Date: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(), GoVersion: runtime.Version()}
	blobPath := "/v2/" + repo + "/blobs/" + digest
	manifestPath := "/v2/" + repo + "/manifests/latest"
	// Repetitions, interleaved: blobs are quick to move, manifest loads last
	// d each.
	blobReps, reps := 5, 3
	if o.quick {
		blobReps, reps = 3, 1
	}
	if !o.manifest {
		for _, clients := range []int{1, 16} {
			fmt.Printf("blob streaming, %d clients\n", clients)
			s := interleaved(blobReps,
				func() float64 { return blobMBps(upURL+blobPath, "", clients, o.blobSize) },
				func() float64 { return blobMBps(ngURL+blobPath, "", clients, o.blobSize) },
				func() float64 { return blobMBps(px.url+blobPath, px.token, clients, o.blobSize) })
			direct, nginx, proxy, ratio := median(s[0]), median(s[1]), median(s[2]), medianRatio(s[2], s[0])
			if clients == 1 {
				r.BlobMBpsDirect, r.BlobMBpsNginx, r.BlobMBpsProxy, r.BlobRatioDirect = direct, nginx, proxy, ratio
			} else {
				r.BlobMBpsDirect16, r.BlobMBpsNginx16, r.BlobMBpsProxy16, r.BlobRatioDirect16 = direct, nginx, proxy, ratio
			}
		}
	}
	d := 3 * time.Second
	if o.quick {
		d = 2 * time.Second
	}
	fmt.Println("manifest GETs, 64 keep-alive clients")
	var ngCPU, pxCPU []float64
	s := interleaved(reps,
		func() float64 { rps, _ := manifestLoad(upURL+manifestPath, "", 64, d, nil); return rps },
		func() float64 {
			rps, cpu := manifestLoad(ngURL+manifestPath, "", 64, d, ng.pids)
			ngCPU = append(ngCPU, cpu)
			return rps
		},
		func() float64 {
			rps, cpu := manifestLoad(px.url+manifestPath, px.token, 64, d, func() []int { return []int{px.cmd.Process.Pid} })
			pxCPU = append(pxCPU, cpu)
			return rps
		})
	r.ManifestRPSDirect, r.ManifestRPSNginx, r.ManifestRPSProxy = median(s[0]), median(s[1]), median(s[2])
	r.ManifestCPUusNginx, r.ManifestCPUusProxy = round(median(ngCPU)), round(median(pxCPU))
	if o.manifest {
		fmt.Printf("manifest GETs/s: direct %.0f, nginx %.0f, qci-appci %.0f; CPU µs each: nginx %.1f, qci-appci %.1f\n",
			r.ManifestRPSDirect, r.ManifestRPSNginx, r.ManifestRPSProxy, r.ManifestCPUusNginx, r.ManifestCPUusProxy)
		return nil
	}

	fmt.Println("peak RSS under 64 blob streams (a fresh instance)")
	fresh, err := startProxy(bin, dir, upURL)
	if err != nil {
		return err
	}
	blobMBps(fresh.url+blobPath, fresh.token, 64, o.blobSize)
	r.RSSMiB64Streams = round(float64(peakRSSKiB(fresh.cmd.Process.Pid)) / 1024)
	fresh.stop()

	fmt.Println("logins per second")
	r.LoginsPerSecond = round(logins(px.url, 16, d))

	fmt.Println("cold start")
	r.ColdStartMsV2, r.ColdStartMsManifest, err = coldStart(bin, dir, upURL, 10)
	if err != nil {
		return err
	}
	floor := filepath.Join(dir, "gofloor")
	if out, err := exec.Command("go", "build", "-trimpath", "-o", floor, "./test/bench/gofloor").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	if r.ColdStartMsGoFloor, _, err = coldStart(floor, dir, upURL, 10); err != nil {
		return fmt.Errorf("go floor: %w", err)
	}
	fmt.Println("upstream token fetches for 100 concurrent cold requests")
	r.UpstreamTokenFetches, err = coldFetches(bin, dir, upURL, filepath.Join(dir, "upstream", "token.log"))
	if err != nil {
		return err
	}
	r.BlobMBpsDirect, r.BlobMBpsNginx, r.BlobMBpsProxy = round(r.BlobMBpsDirect), round(r.BlobMBpsNginx), round(r.BlobMBpsProxy)
	r.BlobMBpsDirect16, r.BlobMBpsNginx16, r.BlobMBpsProxy16 = round(r.BlobMBpsDirect16), round(r.BlobMBpsNginx16), round(r.BlobMBpsProxy16)
	r.ManifestRPSDirect, r.ManifestRPSNginx, r.ManifestRPSProxy = round(r.ManifestRPSDirect), round(r.ManifestRPSNginx), round(r.ManifestRPSProxy)

	b, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(o.out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println(string(b))
	if o.readme != "" {
		if err := writeReadmeTable(o.readme, r); err != nil {
			return err
		}
	}
	if r.UpstreamTokenFetches != 1 {
		return fmt.Errorf("100 concurrent cold requests made %d upstream token fetches, want 1", r.UpstreamTokenFetches)
	}
	return nil
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// interleaved runs the measures one after another, reps times over, so
// that a machine that slows down or speeds up during the run (a shared one
// does) affects each of them alike, and returns each measure's samples.
func interleaved(reps int, measures ...func() float64) [][]float64 {
	samples := make([][]float64, len(measures))
	for range reps {
		for i, m := range measures {
			samples[i] = append(samples[i], m())
		}
	}
	return samples
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	sort.Float64s(v)
	return v[len(v)/2]
}

// medianRatio is the median of a[i]/b[i]: each ratio compares two samples
// taken one right after the other.
func medianRatio(a, b []float64) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	return round(median(r))
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %s/%s", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
}

// writeContent writes the blob and the manifest where nginx serves them.
func writeContent(dir string, size int64) (string, error) {
	blobs := filepath.Join(dir, "www", "v2", repo, "blobs")
	manifests := filepath.Join(dir, "www", "v2", repo, "manifests")
	for _, d := range []string{blobs, manifests, filepath.Join(dir, "upstream"), filepath.Join(dir, "proxy")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	tmp := filepath.Join(blobs, "tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	h := newSHA256()
	src := io.LimitReader(rand.NewChaCha8([32]byte{1}), size)
	if _, err := io.Copy(io.MultiWriter(f, h), src); err != nil {
		return "", err
	}
	f.Close()
	digest := "sha256:" + fmt.Sprintf("%x", h.Sum(nil))
	if err := os.Rename(tmp, filepath.Join(blobs, digest)); err != nil {
		return "", err
	}
	manifest := fmt.Sprintf(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}`, digest, size, digest, size)
	return digest, os.WriteFile(filepath.Join(manifests, "latest"), []byte(manifest), 0o644)
}

func upstreamConf(dir string, port int) string {
	return fmt.Sprintf(`
worker_processes 2;
pid %[1]s/upstream/nginx.pid;
error_log %[1]s/upstream/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/upstream;
  proxy_temp_path %[1]s/upstream;
  fastcgi_temp_path %[1]s/upstream;
  uwsgi_temp_path %[1]s/upstream;
  scgi_temp_path %[1]s/upstream;
  server {
    listen 127.0.0.1:%[2]d;
    root %[1]s/www;
    location = /v2/ {
      add_header WWW-Authenticate 'Bearer realm="http://localhost:%[2]d/token",service="bench"' always;
      return 401;
    }
    location = /token {
      access_log %[1]s/upstream/token.log;
      default_type application/json;
      return 200 '{"token":"%[3]s","expires_in":3600}';
    }
    location /v2/openshift/ci/manifests/ {
      default_type application/vnd.oci.image.manifest.v1+json;
    }
    location /v2/openshift/ci/blobs/ {
      default_type application/octet-stream;
    }
  }
}
`, dir, port, upstreamTok)
}

func proxyConf(dir string, port, upPort int) string {
	return fmt.Sprintf(`
worker_processes 2;
pid %[1]s/proxy/nginx.pid;
error_log %[1]s/proxy/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/proxy;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/proxy;
  uwsgi_temp_path %[1]s/proxy;
  scgi_temp_path %[1]s/proxy;
  upstream registry {
    server 127.0.0.1:%[3]d;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass http://registry;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer %[4]s";
      proxy_buffering off;
    }
  }
}
`, dir, port, upPort, upstreamTok)
}

type nginxProc struct {
	cmd *exec.Cmd
}

func startNginx(bin, dir, name, conf string) (*nginxProc, error) {
	path := filepath.Join(dir, name, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-e", filepath.Join(dir, name, "error.log"), "-p", filepath.Join(dir, name), "-c", path, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nginxProc{cmd: cmd}
	addr := regexpListen(conf)
	if err := waitTCP(addr); err != nil {
		n.stop()
		return nil, fmt.Errorf("nginx %s: %w", name, err)
	}
	return n, nil
}

func regexpListen(conf string) string {
	i := strings.Index(conf, "listen ")
	rest := conf[i+len("listen "):]
	return rest[:strings.IndexByte(rest, ';')]
}

// pids are the nginx master and workers.
func (n *nginxProc) pids() []int {
	pids := []int{n.cmd.Process.Pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.cmd.Process.Pid, n.cmd.Process.Pid))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// stop asks nginx to stop with SIGTERM, on which the master ends its
// workers; SIGKILL would leave the workers running, holding the port.
func (n *nginxProc) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("%s did not start listening", addr)
}

// proxyProc is a running qci-appci with a valid pull token.
type proxyProc struct {
	cmd   *exec.Cmd
	url   string
	token string
}

func proxyEnv(port int, upURL string) []string {
	return []string{"PATH=" + os.Getenv("PATH"), "PORT=" + strconv.Itoa(port), "QCI_UPSTREAM_URL=" + upURL,
		"QCI_ROBOT_USERNAME=" + robotUser, "QCI_ROBOT_PASSWORD=" + robotPass, "QCI_SIGNING_KEY=" + signingKey}
}

func startProxy(bin, dir, upURL string) (*proxyProc, error) {
	port := freePort()
	logf, err := os.Create(filepath.Join(dir, "qci-appci.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = proxyEnv(port, upURL)
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proxyProc{cmd: cmd, url: "http://localhost:" + strconv.Itoa(port), token: pullToken("localhost:" + strconv.Itoa(port))}
	if err := waitTCP("127.0.0.1:" + strconv.Itoa(port)); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *proxyProc) stop() {
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// pullToken signs an access token as the function would for host.
func pullToken(host string) string {
	keys, err := token.NewKeys([][]byte{[]byte(signingKey)}, time.Hour)
	if err != nil {
		panic(err)
	}
	iss := &token.Issuer{Keys: keys, AccessTTL: time.Hour}
	t, err := iss.Access(host, token.Subject{Name: robotUser, Login: token.LoginRobot}, []registry.Scope{registry.PullScope(repo)}, time.Now())
	if err != nil {
		panic(err)
	}
	return t.Raw
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}

func get(url, tok string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return client.Do(req)
}

// blobMBps downloads the blob with n clients at once and returns MB/s.
func blobMBps(url, tok string, n int, size int64) float64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	buf := make([][]byte, n)
	for i := range n {
		buf[i] = make([]byte, 256<<10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := get(url, tok)
			if err != nil {
				fmt.Fprintln(os.Stderr, "blob:", err)
				return
			}
			m, _ := io.CopyBuffer(io.Discard, struct{ io.Reader }{resp.Body}, buf[i])
			resp.Body.Close()
			if m != size || resp.StatusCode != 200 {
				fmt.Fprintf(os.Stderr, "blob: %d bytes, status %d\n", m, resp.StatusCode)
			}
			total.Add(m)
		}()
	}
	wg.Wait()
	return float64(total.Load()) / time.Since(start).Seconds() / 1e6
}

// load runs n clients calling do until d has passed and returns the
// successful calls per second.
func load(n int, d time.Duration, do func() bool) float64 {
	var count atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if do() {
					count.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return float64(count.Load()) / time.Since(start).Seconds()
}

// status sends req and reports whether it was answered 200.
func status(req *http.Request) bool {
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// manifestLoad runs n keep-alive clients for d and returns requests per
// second and, when pids is set, those processes' CPU µs per request.
func manifestLoad(url, tok string, n int, d time.Duration, pids func() []int) (float64, float64) {
	var before int64
	if pids != nil {
		before = cpuTicks(pids())
	}
	start := time.Now()
	rps := load(n, d, func() bool {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return status(req)
	})
	requests := rps * time.Since(start).Seconds()
	if pids == nil || requests == 0 {
		return rps, 0
	}
	return rps, float64(cpuTicks(pids())-before) * 1e4 / requests // 100 ticks a second
}

// cpuTicks sums utime+stime of pids (clock ticks).
func cpuTicks(pids []int) int64 {
	var sum int64
	for _, p := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		u, _ := strconv.ParseInt(f[11], 10, 64)
		k, _ := strconv.ParseInt(f[12], 10, 64)
		sum += u + k
	}
	return sum
}

func peakRSSKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			v, _ := strconv.ParseInt(strings.Fields(l)[1], 10, 64)
			return v
		}
	}
	return 0
}

func logins(base string, n int, d time.Duration) float64 {
	return load(n, d, func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/v2/auth?scope=repository:"+repo+":pull", nil)
		req.SetBasicAuth(robotUser, robotPass)
		return status(req)
	})
}

// coldStart execs the binary runs times and measures the time to the first
// 200 on /v2/ with a valid token, and to the first proxied manifest.
func coldStart(bin, dir, upURL string, runs int) (float64, float64, error) {
	var v2, mf []float64
	for range runs {
		port := freePort()
		host := "localhost:" + strconv.Itoa(port)
		tok := pullToken(host)
		cmd := exec.Command(bin)
		cmd.Env = proxyEnv(port, upURL)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, 0, err
		}
		ok := false
		for time.Since(start) < 10*time.Second {
			req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					ok = true
					break
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
		v2 = append(v2, float64(time.Since(start).Microseconds())/1000)
		req, _ := http.NewRequest(http.MethodGet, "http://"+host+"/v2/"+repo+"/manifests/latest", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		mf = append(mf, float64(time.Since(start).Microseconds())/1000)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if !ok || err != nil || resp.StatusCode != 200 {
			return 0, 0, fmt.Errorf("cold start: /v2/ ok=%v manifest %v", ok, err)
		}
	}
	sort.Float64s(v2)
	sort.Float64s(mf)
	return round(v2[len(v2)/2]), round(mf[len(mf)/2]), nil
}

// coldFetches starts a fresh instance, sends 100 concurrent first requests
// and counts the upstream token fetches in nginx's token log.
func coldFetches(bin, dir, upURL, tokenLog string) (int, error) {
	before := countLines(tokenLog)
	p, err := startProxy(bin, dir, upURL)
	if err != nil {
		return 0, err
	}
	defer p.stop()
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := get(p.url+"/v2/"+repo+"/manifests/latest", p.token)
			if err != nil {
				failed.Add(1)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return 0, fmt.Errorf("%d of 100 cold requests failed", failed.Load())
	}
	return countLines(tokenLog) - before, nil
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "\n")
}
