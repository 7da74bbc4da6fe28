// Command bench measures qci-appci where it runs: behind an h2c front
// (Knative's queue-proxy, Cloud Run) in front of an https upstream. In one
// run on this machine it starts an upstream (nginx over TLS with a CA of
// the bench's own, serving a token endpoint, manifests and blobs), nginx as
// an auth-injecting proxy to it, and the real qci-appci binary, and
// measures them interleaved against the upstream reached directly; the
// cold pull is measured again on quay.io's shape, an upstream whose blob
// GETs are 302s to a pre-signed URL on a CDN of another name. A
// secondary table repeats the throughput rows against a plain-HTTP
// upstream. It writes results.json and the README's tables.
//
//	go run ./test/bench                # make bench
//	go run ./test/bench -quick         # make bench-smoke: a short run, no timing asserted
//	go run ./test/bench -profile DIR   # perf profiles of the function under load
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type options struct {
	quick    bool
	blobSize int64
	out      string
	readme   string
	profile  string
}

func main() {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "a short run that writes the same rows (no timing asserted)")
	flag.StringVar(&o.out, "out", "test/bench/results.json", "where to write the results")
	flag.StringVar(&o.readme, "readme", "test/bench/README.md", "README whose results tables are rewritten; empty: none")
	flag.StringVar(&o.profile, "profile", "", "write perf profiles of the function under blob and manifest load to this directory instead of measuring")
	flag.Parse()
	o.blobSize = 256 << 20
	if o.quick {
		o.blobSize = 32 << 20
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Peer names, the keys of results.json's per-peer rows.
const (
	direct    = "direct_tls" // the client to the TLS upstream, HTTP/1.1 over TLS
	nginxH2C  = "nginx_h2c"  // nginx as proxy, h2c in front, TLS behind
	nginxH1   = "nginx_h1"
	qciH2C    = "qci_h2c"
	qciH1     = "qci_h1"
	goFloor   = "go_floor_h2c" // gofloor: net/http's h2c server answering {} to everything
	directP   = "direct_plain" // the plain-HTTP table: HTTP/1.1 everywhere
	nginxP    = "nginx_plain"
	qciPlain  = "qci_plain"
	blobPath  = "/v2/" + repo + "/blobs/"
	manifests = "/v2/" + repo + "/manifests/"
)

// bench is everything a run has started.
type bench struct {
	o        options
	dir      string
	bin      string
	floor    string
	ca       *benchCA
	c        *content
	up       upstreamPorts
	upProc   *nginxProc
	ngProc   *nginxProc
	fn       *funcProc // in front of the TLS upstream
	fnPlain  *funcProc // in front of the plain-HTTP upstream
	floorH2C *funcProc // gofloor, for the CPU floor of a Go h2c server
	peers    map[string]*peer
	tokenLog string
	pullLog  string
	// redirectLog and cdnLog are the access logs of quay.io's shape: the
	// registry that redirects blob GETs and the CDN it redirects to.
	redirectLog string
	cdnLog      string
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
	b, err := setUp(o, dir)
	if b != nil {
		defer b.tearDown()
	}
	if err != nil {
		return err
	}
	if o.profile != "" {
		return b.profile(o.profile)
	}
	r, err := b.measure()
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(o.out, append(out, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println(string(out))
	if o.readme != "" {
		if err := writeReadmeTables(o.readme, r); err != nil {
			return err
		}
	}
	return r.Production.checkTokenFetches()
}

func setUp(o options, dir string) (*bench, error) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		return nil, errors.New("nginx is not installed: apt-get install -y nginx-light")
	}
	b := &bench{o: o, dir: dir, bin: filepath.Join(dir, "qci-appci"), floor: filepath.Join(dir, "gofloor"),
		tokenLog: filepath.Join(dir, "upstream", "token.log"), pullLog: filepath.Join(dir, "upstream", "pull.log"),
		redirectLog: filepath.Join(dir, "upstream", "redirect.log"), cdnLog: filepath.Join(dir, "upstream", "cdn.log")}
	// Built as the image is (static, CGO_ENABLED=0, -trimpath: .ko.yaml)
	// but with its symbols (no -s -w), so that perf can name its functions.
	for bin, pkg := range map[string]string{b.bin: "./cmd/qci-appci", b.floor: "./test/bench/gofloor"} {
		build := exec.Command("go", "build", "-trimpath", "-o", bin, pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build %s: %v\n%s", pkg, err, out)
		}
	}
	if b.ca, err = newBenchCA(dir); err != nil {
		return nil, err
	}
	if b.c, err = writeContent(dir, o.blobSize); err != nil {
		return nil, err
	}
	b.up = upstreamPorts{tls: freePort(), pull: freePort(), plain: freePort(), redirect: freePort(), cdn: freePort()}
	if b.upProc, err = startNginx(nginx, dir, "upstream", upstreamConf(dir, b.up, b.ca, b.c), b.up.tls, b.up.pull, b.up.plain, b.up.redirect, b.up.cdn); err != nil {
		return b, err
	}

	pp := proxyPorts{h2c: freePort(), h1: freePort(), plain: freePort()}
	if b.ngProc, err = startNginx(nginx, dir, "proxy", proxyConf(dir, pp, b.up, b.ca), pp.h2c, pp.h1, pp.plain); err != nil {
		return b, err
	}
	if b.fn, err = startFunc(b.bin, dir, b.upURL(b.up.tls), b.ca); err != nil {
		return b, err
	}
	if err := b.checkCDN(); err != nil {
		return b, err
	}
	if b.fnPlain, err = startFunc(b.bin, dir, "http://localhost:"+strconv.Itoa(b.up.plain), b.ca); err != nil {
		return b, err
	}
	if b.floorH2C, err = startFunc(b.floor, dir, "", b.ca); err != nil {
		return b, err
	}
	h2c := func() *http.Client { return &http.Client{Transport: newH2CTransport()} } // a connection of its own each, as queue-proxy's
	h1 := func() *http.Client { return &http.Client{Transport: newH1Transport()} }
	ng := b.ngProc.pids
	b.peers = map[string]*peer{
		direct:   {base: "https://" + upstreamHost + ":" + strconv.Itoa(b.up.tls), client: &http.Client{Transport: newTLSTransport(b.ca)}, token: upstreamTok, proto: 1},
		nginxH2C: {base: "http://localhost:" + strconv.Itoa(pp.h2c), client: h2c(), token: "ignored", proto: 2, pids: ng},
		nginxH1:  {base: "http://localhost:" + strconv.Itoa(pp.h1), client: h1(), token: "ignored", proto: 1, pids: ng},
		qciH2C:   {base: "http://" + b.fn.host, client: h2c(), token: b.fn.token, proto: 2, pids: b.fn.pids},
		qciH1:    {base: "http://" + b.fn.host, client: h1(), token: b.fn.token, proto: 1, pids: b.fn.pids},
		directP:  {base: "http://localhost:" + strconv.Itoa(b.up.plain), client: h1(), token: upstreamTok, proto: 1},
		nginxP:   {base: "http://localhost:" + strconv.Itoa(pp.plain), client: h1(), token: "ignored", proto: 1, pids: ng},
		goFloor:  {base: "http://" + b.floorH2C.host, client: h2c(), token: "ignored", proto: 2, pids: b.floorH2C.pids},
		qciPlain: {base: "http://" + b.fnPlain.host, client: h1(), token: b.fnPlain.token, proto: 1, pids: b.fnPlain.pids},
	}
	for n, p := range b.peers {
		p.name = n
	}
	return b, nil
}

func (b *bench) upURL(port int) string { return "https://localhost:" + strconv.Itoa(port) }

func (b *bench) tearDown() {
	for _, f := range []*funcProc{b.fn, b.fnPlain, b.floorH2C} {
		if f != nil {
			f.stop()
		}
	}
	for _, n := range []*nginxProc{b.ngProc, b.upProc} {
		if n != nil {
			n.stop()
		}
	}
}

// interleaved runs measure on each peer in turn, reps times over, so that
// a machine that slows down or speeds up during the run (a shared one
// does) affects each alike, and returns each peer's samples.
func (b *bench) interleaved(reps int, names []string, measure func(*peer) (float64, error)) (map[string][]float64, error) {
	s := map[string][]float64{}
	for range reps {
		for _, n := range names {
			v, err := measure(b.peers[n])
			if err != nil {
				return nil, err
			}
			s[n] = append(s[n], v)
		}
	}
	return s, nil
}

func round(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func median(v []float64) float64 {
	v = slices.Clone(v)
	sort.Float64s(v)
	return v[len(v)/2]
}

func medians(s map[string][]float64) map[string]float64 {
	m := map[string]float64{}
	for k, v := range s {
		m[k] = round(median(v))
	}
	return m
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

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
