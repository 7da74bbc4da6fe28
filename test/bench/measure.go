package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// results is results.json.
type results struct {
	Quick       bool   `json:"quick"`
	BlobSizeMiB int64  `json:"blob_size_mib"`
	Machine     string `json:"machine"`
	Date        string `json:"date"`
	GoVersion   string `json:"go_version"`
	Commit      string `json:"commit"`

	Production production `json:"production"`
	PlainHTTP  plainHTTP  `json:"plain_http"`
	Targets    []target   `json:"targets"`
}

// production is the main table: h2c (and HTTP/1.1) clients, TLS upstream.
// Per-peer rows are keyed by the peer names above.
type production struct {
	peerRows
	DigestGETsPerS       map[string]float64 `json:"manifest_by_digest_gets_per_s_64_clients"`
	DigestCPUus          map[string]float64 `json:"manifest_by_digest_cpu_us_per_get"`
	RSSMiB8Streams       float64            `json:"peak_rss_mib_8_h2c_blob_streams"`
	ColdStartMsV2        float64            `json:"cold_start_ms_first_v2"`
	ColdStartMsMfst      float64            `json:"cold_start_ms_first_manifest_over_tls"`
	ColdStartCPUMs       float64            `json:"cold_start_cpu_ms_to_first_manifest"`
	ColdStartMsMfstNoDir float64            `json:"cold_start_ms_first_manifest_ssl_cert_dir_empty"`
	ColdStartCPUMsNoDir  float64            `json:"cold_start_cpu_ms_first_manifest_ssl_cert_dir_empty"`
	ColdStartCPUMsV2     float64            `json:"cold_start_cpu_ms_to_first_v2"`
	ColdStartCPUMsFloor  float64            `json:"cold_start_cpu_ms_go_floor"`
	ColdStartMsFloor     float64            `json:"cold_start_ms_go_floor"`
	ColdPullMs           float64            `json:"cold_pull_ms_qci_h2c"`
	DirectPullMs         float64            `json:"pull_ms_direct_tls"`
	ColdPullExtraMsNoDir float64            `json:"cold_pull_extra_ms_ssl_cert_dir_empty"`
	WarmPullMsH1         float64            `json:"warm_pull_ms_by_tag_fresh_client_http1"`
	WarmPullMs           float64            `json:"warm_pull_ms_by_tag_fresh_client"`
	ColdPullExtraMs      float64            `json:"cold_pull_extra_ms"`
	ColdPullUpstream     []string           `json:"cold_pull_upstream_requests"`
	FirstDigestUp        []string           `json:"first_pull_by_digest_upstream_requests"`
	WarmDigestUp         []string           `json:"warm_pull_by_digest_upstream_requests"`
	WarmTagUp            []string           `json:"warm_pull_by_tag_upstream_requests"`
	TokenFetchesPull     []int              `json:"upstream_token_fetches_each_cold_pull"`
	// The cold pull on quay.io's shape: blob GETs answered 302 to a CDN.
	CDNDirectPullMs     float64  `json:"pull_ms_direct_tls_blobs_redirected"`
	CDNColdPullMs       float64  `json:"cold_pull_ms_qci_h2c_blobs_redirected"`
	CDNColdPullExtraMs  float64  `json:"cold_pull_extra_ms_blobs_redirected"`
	CDNWarmPullMs       float64  `json:"warm_pull_ms_by_tag_fresh_client_blobs_redirected"`
	CDNColdPullUpstream []string `json:"cold_pull_blobs_redirected_upstream_requests"`
	CDNColdPullCDN      []string `json:"cold_pull_blobs_redirected_cdn_requests"`
	TokenFetchesCDN     []int    `json:"upstream_token_fetches_each_cold_pull_blobs_redirected"`
	TokenFetches100     int      `json:"upstream_token_fetches_100_concurrent_cold"`
	RatioBlob1Direct    float64  `json:"ratio_blob_1_qci_h2c_to_direct"`
	RatioBlob8Direct    float64  `json:"ratio_blob_8_qci_h2c_to_direct"`
	RatioBlob1Nginx     float64  `json:"ratio_blob_1_qci_h2c_to_nginx_h2c"`
	RatioBlob8Nginx     float64  `json:"ratio_blob_8_qci_h2c_to_nginx_h2c"`
	RatioCPU            float64  `json:"ratio_manifest_cpu_qci_h2c_to_nginx_h2c"`
	RatioDigestCPU      float64  `json:"ratio_digest_cpu_qci_h2c_to_nginx_h2c"`
	RatioH1Blob1        float64  `json:"ratio_blob_1_qci_h1_to_direct"`
	RatioH1Blob8        float64  `json:"ratio_blob_8_qci_h1_to_direct"`
	RatioH1CPU          float64  `json:"ratio_manifest_cpu_qci_h1_to_nginx_h1"`
}

// plainHTTP is the secondary table: HTTP/1.1 clients, plain-HTTP upstream.
type plainHTTP struct {
	peerRows
}

// peerRows are the rows both tables measure for each peer: blob
// throughput and CPU, manifest GETs and their CPU. Embedded, they stay
// top-level fields of each table's JSON.
type peerRows struct {
	BlobMBps1        map[string]float64 `json:"blob_mbps_1_client"`
	BlobMBps8        map[string]float64 `json:"blob_mbps_8_clients"`
	BlobCPU1         map[string]float64 `json:"blob_cpu_s_per_gb_1_client"`
	BlobCPU8         map[string]float64 `json:"blob_cpu_s_per_gb_8_clients"`
	PathCPU1         map[string]float64 `json:"blob_path_cpu_s_per_gb_1_client"`
	PathCPU8         map[string]float64 `json:"blob_path_cpu_s_per_gb_8_clients"`
	ManifestGETsPerS map[string]float64 `json:"manifest_gets_per_s_64_clients"`
	ManifestCPUus    map[string]float64 `json:"manifest_cpu_us_per_get"`
}

// target is one of issue 13's targets, measured as a ratio (or a bound)
// within the run.
type target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Want  string  `json:"want"`
	Met   bool    `json:"met"`
}

func (p production) checkTokenFetches() error {
	for i, n := range p.TokenFetchesPull {
		if n != 1 {
			return fmt.Errorf("cold pull %d made %d upstream token fetches, want 1", i+1, n)
		}
	}
	for i, n := range p.TokenFetchesCDN {
		if n != 1 {
			return fmt.Errorf("cold pull %d with blobs redirected to the CDN made %d upstream token fetches, want 1", i+1, n)
		}
	}
	if p.TokenFetches100 != 1 {
		return fmt.Errorf("100 concurrent cold requests made %d upstream token fetches, want 1", p.TokenFetches100)
	}
	return nil
}

// schedule is how long each measure runs.
type schedule struct {
	blob1Reps, blob8Reps, manifestReps, coldRuns int
	manifestFor                                  time.Duration
}

func (b *bench) schedule() schedule {
	if b.o.quick {
		return schedule{blob1Reps: 1, blob8Reps: 1, manifestReps: 1, coldRuns: 3, manifestFor: 500 * time.Millisecond}
	}
	return schedule{blob1Reps: 5, blob8Reps: 3, manifestReps: 3, coldRuns: 10, manifestFor: 3 * time.Second}
}

var (
	tlsPeers   = []string{direct, nginxH2C, qciH2C, nginxH1, qciH1}
	plainPeers = []string{directP, nginxP, qciPlain}
)

func (b *bench) measure() (*results, error) {
	sc := b.schedule()
	r := &results{Quick: b.o.quick, BlobSizeMiB: b.o.blobSize >> 20, Date: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(), GoVersion: runtime.Version(), Commit: commit()}
	p := &r.Production
	var cpu, all map[string][]float64
	blob := func(n int) func(*peer) (float64, error) {
		return func(pr *peer) (float64, error) {
			// CPU seconds (ticks/100) per GB moved: the proxy's, and the
			// whole path's on this machine (upstream, proxy, client).
			self := []int{os.Getpid()}
			before := cpuTicks(b.upProc.pids()) + cpuTicks(self)
			var pxBefore int64
			if pr.pids != nil {
				pxBefore = cpuTicks(pr.pids())
			}
			mbps, err := blobMBps(pr, b.c, n)
			gb := float64(int64(n)*b.c.blobSize) / 1e9
			path := cpuTicks(b.upProc.pids()) + cpuTicks(self) - before
			if pr.pids != nil {
				px := cpuTicks(pr.pids()) - pxBefore
				cpu[pr.name] = append(cpu[pr.name], float64(px)/100/gb)
				path += px
			}
			all[pr.name] = append(all[pr.name], float64(path)/100/gb)
			return mbps, err
		}
	}
	mfst := func(path, digest string) func(*peer) (float64, error) {
		return func(pr *peer) (float64, error) {
			rps, us, err := manifestLoad(pr, path, digest, 64, sc.manifestFor)
			cpu[pr.name] = append(cpu[pr.name], us)
			return rps, err
		}
	}

	fmt.Println("production path: blob MB/s, 1 client")
	cpu, all = map[string][]float64{}, map[string][]float64{}
	s, err := b.interleaved(sc.blob1Reps, tlsPeers, blob(1))
	if err != nil {
		return nil, err
	}
	p.BlobMBps1, p.BlobCPU1, p.PathCPU1 = medians(s), medians(cpu), medians(all)
	p.RatioBlob1Direct, p.RatioBlob1Nginx = medianRatio(s[qciH2C], s[direct]), medianRatio(s[qciH2C], s[nginxH2C])
	p.RatioH1Blob1 = medianRatio(s[qciH1], s[direct])

	fmt.Println("production path: blob MB/s, 8 clients")
	cpu, all = map[string][]float64{}, map[string][]float64{}
	if s, err = b.interleaved(sc.blob8Reps, tlsPeers, blob(8)); err != nil {
		return nil, err
	}
	p.BlobMBps8, p.BlobCPU8, p.PathCPU8 = medians(s), medians(cpu), medians(all)
	p.RatioBlob8Direct, p.RatioBlob8Nginx = medianRatio(s[qciH2C], s[direct]), medianRatio(s[qciH2C], s[nginxH2C])
	p.RatioH1Blob8 = medianRatio(s[qciH1], s[direct])

	fmt.Println("production path: manifest GETs by tag, 64 clients")
	cpu = map[string][]float64{}
	if s, err = b.interleaved(sc.manifestReps, tlsPeers, mfst(manifests+blobTag, b.c.blobManifest)); err != nil {
		return nil, err
	}
	p.ManifestGETsPerS, p.ManifestCPUus = medians(s), medians(cpu)
	delete(p.ManifestCPUus, direct)
	p.RatioCPU, p.RatioH1CPU = medianRatio(cpu[qciH2C], cpu[nginxH2C]), medianRatio(cpu[qciH1], cpu[nginxH1])

	fmt.Println("production path: manifest GETs by digest (the function's cache), 64 clients")
	cpu = map[string][]float64{}
	byDigest, floor := mfst(manifests+b.c.blobManifest, b.c.blobManifest), mfst("/v2/", sha([]byte("{}")))
	if s, err = b.interleaved(sc.manifestReps, []string{nginxH2C, qciH2C, goFloor}, func(pr *peer) (float64, error) {
		if pr.name == goFloor {
			return floor(pr)
		}
		return byDigest(pr)
	}); err != nil {
		return nil, err
	}
	p.DigestGETsPerS, p.DigestCPUus = medians(s), medians(cpu)
	p.RatioDigestCPU = medianRatio(cpu[qciH2C], cpu[nginxH2C])

	fmt.Println("production path: peak RSS under 8 h2c blob streams (a fresh instance)")
	if p.RSSMiB8Streams, err = b.rss(); err != nil {
		return nil, err
	}
	fmt.Println("production path: cold start")
	cs, err := b.coldStart(b.bin, sc.coldRuns, true)
	if err != nil {
		return nil, err
	}
	p.ColdStartMsV2, p.ColdStartCPUMsV2, p.ColdStartMsMfst, p.ColdStartCPUMs = cs.v2, cs.v2CPU, cs.manifest, cs.manifestCPU
	// Go's crypto/x509 reads SSL_CERT_FILE and then every file of
	// SSL_CERT_DIR (default /etc/ssl/certs) on the first TLS handshake; with
	// SSL_CERT_DIR naming an empty directory it reads only the file.
	noDir := filepath.Join(b.dir, "empty-cert-dir")
	if err := os.MkdirAll(noDir, 0o755); err != nil {
		return nil, err
	}
	if cs, err = b.coldStart(b.bin, sc.coldRuns, true, "SSL_CERT_DIR="+noDir); err != nil {
		return nil, err
	}
	p.ColdStartMsMfstNoDir, p.ColdStartCPUMsNoDir = cs.manifest, cs.manifestCPU
	if cs, err = b.coldStart(b.floor, sc.coldRuns, false); err != nil {
		return nil, fmt.Errorf("go floor: %w", err)
	}
	p.ColdStartMsFloor, p.ColdStartCPUMsFloor = cs.v2, cs.v2CPU
	fmt.Println("production path: cold pulls, through qci-appci and direct")
	if err := b.coldPulls(p, sc.coldRuns, noDir); err != nil {
		return nil, err
	}
	fmt.Println("production path: cold pulls with blobs redirected to a CDN (quay.io's shape), through qci-appci and direct")
	if err := b.coldPullsCDN(p, sc.coldRuns); err != nil {
		return nil, err
	}
	fmt.Println("production path: upstream token fetches for 100 concurrent cold requests")
	if p.TokenFetches100, err = b.coldFetches(); err != nil {
		return nil, err
	}

	q := &r.PlainHTTP
	fmt.Println("plain-HTTP upstream: blob MB/s, 1 and 8 clients; manifest GETs")
	cpu, all = map[string][]float64{}, map[string][]float64{}
	if s, err = b.interleaved(sc.blob1Reps, plainPeers, blob(1)); err != nil {
		return nil, err
	}
	q.BlobMBps1, q.BlobCPU1, q.PathCPU1 = medians(s), medians(cpu), medians(all)
	cpu, all = map[string][]float64{}, map[string][]float64{}
	if s, err = b.interleaved(sc.blob8Reps, plainPeers, blob(8)); err != nil {
		return nil, err
	}
	q.BlobMBps8, q.BlobCPU8, q.PathCPU8 = medians(s), medians(cpu), medians(all)
	cpu = map[string][]float64{}
	if s, err = b.interleaved(sc.manifestReps, plainPeers, mfst(manifests+blobTag, b.c.blobManifest)); err != nil {
		return nil, err
	}
	q.ManifestGETsPerS, q.ManifestCPUus = medians(s), medians(cpu)
	delete(q.ManifestCPUus, directP)

	r.Targets = []target{
		{"blob, 1 client: qci-appci h2c ÷ direct", p.RatioBlob1Direct, "≥ 1.0", p.RatioBlob1Direct >= 1.0},
		{"blob, 8 clients: qci-appci h2c ÷ direct", p.RatioBlob8Direct, "≥ 0.9", p.RatioBlob8Direct >= 0.9},
		{"blob, 1 client: qci-appci h2c ÷ nginx h2c", p.RatioBlob1Nginx, "≥ 1.5", p.RatioBlob1Nginx >= 1.5},
		{"blob, 8 clients: qci-appci h2c ÷ nginx h2c", p.RatioBlob8Nginx, "≥ 1.5", p.RatioBlob8Nginx >= 1.5},
		{"CPU per manifest GET: qci-appci h2c ÷ nginx h2c", p.RatioCPU, "≤ 1.5", p.RatioCPU <= 1.5},
		{"CPU per manifest GET by digest: qci-appci h2c ÷ nginx h2c", p.RatioDigestCPU, "≤ 0.5", p.RatioDigestCPU <= 0.5},
		{"peak RSS, 8 streams, MiB", p.RSSMiB8Streams, "≤ 32", p.RSSMiB8Streams <= 32},
		{"cold pull − direct pull, ms", p.ColdPullExtraMs, "≤ 25", p.ColdPullExtraMs <= 25},
		{"the same, SSL_CERT_DIR an empty directory, ms", p.ColdPullExtraMsNoDir, "≤ 25", p.ColdPullExtraMsNoDir <= 25},
		{"informational, not an issue target: cold pull − direct, blobs redirected to a CDN as quay.io does, ms", p.CDNColdPullExtraMs, "≤ 25", p.CDNColdPullExtraMs <= 25},
		{"upstream manifest GETs of a warm pull by digest", float64(manifestGETs(p.WarmDigestUp)), "= 0", manifestGETs(p.WarmDigestUp) == 0},
		{"upstream token fetches, 100 concurrent cold requests", float64(p.TokenFetches100), "= 1", p.TokenFetches100 == 1},
	}
	return r, nil
}

// rss streams the blob to 8 h2c clients at once through a fresh instance
// and returns its peak resident set in MiB.
func (b *bench) rss() (float64, error) {
	f, err := startFunc(b.bin, b.dir, b.upURL(b.up.tls), b.ca)
	if err != nil {
		return 0, err
	}
	defer f.stop()
	pr := &peer{name: "fresh qci-appci", base: "http://" + f.host, client: &http.Client{Transport: newH2CTransport()}, token: f.token, proto: 2}
	if _, err := blobMBps(pr, b.c, 8); err != nil {
		return 0, err
	}
	return round(float64(peakRSSKiB(f.cmd.Process.Pid)) / 1024), nil
}

// coldStart is the medians of a cold start: from the exec to the first
// 200 on /v2/, and to the first manifest, in wall-clock ms and in the
// process's own CPU ms.
type coldStart struct{ v2, v2CPU, manifest, manifestCPU float64 }

// coldStart execs bin runs times and measures the time from the exec to
// the first 200 on /v2/ (with a valid token of ours) and, when manifest is
// set, to the first manifest proxied from the TLS upstream. The client is
// an h2c one that dials until the port listens.
func (b *bench) coldStart(bin string, runs int, manifest bool, env ...string) (coldStart, error) {
	var v2, v2CPU, mf, mfCPU []float64
	for range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		f, err := execFunc(bin, b.dir, b.upURL(b.up.tls), b.ca, env...)
		if err != nil {
			cancel()
			return coldStart{}, err
		}
		pr := &peer{name: "cold " + bin, base: "http://" + f.host, client: &http.Client{Transport: newH2CTransport()}, token: f.token, proto: 2}
		err = okGet(ctx, pr, "/v2/")
		v2, v2CPU = append(v2, ms(time.Since(start))), append(v2CPU, float64(cpuNanos(f.cmd.Process.Pid))/1e6)
		if err == nil && manifest {
			err = okGet(ctx, pr, manifests+blobTag)
			mf, mfCPU = append(mf, ms(time.Since(start))), append(mfCPU, float64(cpuNanos(f.cmd.Process.Pid))/1e6)
		}
		cancel()
		f.stop()
		if err != nil {
			return coldStart{}, fmt.Errorf("cold start: %w", err)
		}
	}
	c := coldStart{v2: round(median(v2)), v2CPU: round(median(v2CPU))}
	if manifest {
		c.manifest, c.manifestCPU = round(median(mf)), round(median(mfCPU))
	}
	return c, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func okGet(ctx context.Context, pr *peer, path string) error {
	resp, err := pr.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s through %s: %s", path, pr.name, resp.Status)
	}
	return nil
}

// coldPulls pulls the 3-layer image runs times, interleaved: straight from
// the upstream (a fresh TLS client each time), and through a qci-appci
// exec'd just before, over h2c (the clock starts at the exec). It counts
// the upstream token fetches of each cold pull and lists the upstream
// requests of the first, then pulls twice more through that warm instance
// (by digest, by tag) and lists what each asked the upstream.
func (b *bench) coldPulls(p *production, runs int, noCertDir string) error {
	directRef := upstreamHost + ":" + strconv.Itoa(b.up.pull) + "/" + repo + ":" + pullTag
	var directs, colds, warms, warmsH1, extra, extraNoDir []float64
	for i := range runs {
		tr := newTLSTransport(b.ca)
		start := time.Now()
		if err := pull(directRef, tr); err != nil {
			return fmt.Errorf("direct: %w", err)
		}
		d := ms(time.Since(start))
		tr.CloseIdleConnections()

		c, f, err := b.coldPull(p, i == 0)
		if err != nil {
			return err
		}
		// Then the same pull by a fresh client through the running instance.
		h2c := newH2CTransport()
		start = time.Now()
		err = pull(f.host+"/"+repo+":"+pullTag, h2c)
		warms = append(warms, ms(time.Since(start)))
		h2c.CloseIdleConnections()
		if err == nil { // and over HTTP/1.1, to tell the hop from the protocol
			h1 := newH1Transport()
			start = time.Now()
			err = pull(f.host+"/"+repo+":"+pullTag, h1)
			warmsH1 = append(warmsH1, ms(time.Since(start)))
			h1.CloseIdleConnections()
		}
		f.stop()
		if err != nil {
			return fmt.Errorf("through a running qci-appci: %w", err)
		}
		directs, colds, extra = append(directs, d), append(colds, c), append(extra, c-d)
		if c, f, err = b.coldPull(p, false, "SSL_CERT_DIR="+noCertDir); err != nil {
			return fmt.Errorf("with SSL_CERT_DIR empty: %w", err)
		}
		f.stop()
		extraNoDir = append(extraNoDir, c-d)
	}
	p.DirectPullMs, p.ColdPullMs, p.ColdPullExtraMs = round(median(directs)), round(median(colds)), round(median(extra))
	p.ColdPullExtraMsNoDir, p.WarmPullMs, p.WarmPullMsH1 = round(median(extraNoDir)), round(median(warms)), round(median(warmsH1))
	return nil
}

// coldPull execs a qci-appci (with env added) and pulls the 3-layer image
// through it over h2c; it returns the ms from the exec to the pull's end
// and the running process, and adds the pull's upstream token fetches to
// p. With list set it also lists the upstream requests of that pull and of
// three more through the now warm instance: by digest twice (the first may
// fill the manifest cache, the second is the warm pull), then by tag.
func (b *bench) coldPull(p *production, list bool, env ...string) (float64, *funcProc, error) {
	_, ups := logLines(b.pullLog, 0)
	c, f, fetched, err := b.execPull(b.up.pull, newH2CTransport(), env...)
	if err != nil {
		return 0, nil, err
	}
	p.TokenFetchesPull = append(p.TokenFetchesPull, fetched)
	if !list {
		return c, f, nil
	}
	var n int
	p.ColdPullUpstream, n = logLines(b.pullLog, ups)
	warm := []struct {
		ref  string
		into *[]string
	}{{"@" + b.c.pullManifest, &p.FirstDigestUp}, {"@" + b.c.pullManifest, &p.WarmDigestUp}, {":" + pullTag, &p.WarmTagUp}}
	for _, w := range warm {
		h2c := newH2CTransport()
		err := pull(f.host+"/"+repo+w.ref, h2c)
		h2c.CloseIdleConnections()
		if err != nil {
			f.stop()
			return 0, nil, fmt.Errorf("warm, through qci-appci: %w", err)
		}
		*w.into, n = logLines(b.pullLog, n)
	}
	return c, f, nil
}

// execPull execs a qci-appci (with env added) in front of the upstream
// on upPort and pulls the 3-layer image through it with tr; it returns the
// ms from the exec to the pull's end, the running process and the
// upstream token fetches the pull caused.
func (b *bench) execPull(upPort int, tr idleCloser, env ...string) (float64, *funcProc, int, error) {
	_, tokens := logLines(b.tokenLog, 0)
	start := time.Now()
	f, err := execFunc(b.bin, b.dir, b.upURL(upPort), b.ca, env...)
	if err != nil {
		return 0, nil, 0, err
	}
	err = pull(f.host+"/"+repo+":"+pullTag, tr)
	c := ms(time.Since(start))
	tr.CloseIdleConnections()
	if err != nil {
		f.stop()
		return 0, nil, 0, fmt.Errorf("through qci-appci: %w", err)
	}
	fetched, _ := logLines(b.tokenLog, tokens)
	return c, f, len(fetched), nil
}

// coldFetches starts a fresh instance, sends it 100 concurrent first
// requests over one h2c connection and counts the upstream token fetches.
func (b *bench) coldFetches() (int, error) {
	_, before := logLines(b.tokenLog, 0)
	f, err := startFunc(b.bin, b.dir, b.upURL(b.up.pull), b.ca)
	if err != nil {
		return 0, err
	}
	defer f.stop()
	pr := &peer{name: "fresh qci-appci", base: "http://" + f.host, client: &http.Client{Transport: newH2CTransport()}, token: f.token, proto: 2}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := okGet(context.Background(), pr, manifests+pullTag); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("100 concurrent cold requests: %w", err)
	}
	fetched, _ := logLines(b.tokenLog, before)
	return len(fetched), nil
}

// manifestGETs counts the manifest requests among upstream access-log lines.
func manifestGETs(lines []string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, manifests) {
			n++
		}
	}
	return n
}
