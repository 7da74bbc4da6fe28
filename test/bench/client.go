package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// dialLoopback dials every address on loopback, keeping the port: the
// bench's clients reach upstreamHost by name (for TLS and for
// go-containerregistry), and nothing resolves it. While the port refuses
// connections (a function process just exec'd, not listening yet) it
// dials again, as a front end that holds the first request until the
// container is ready does.
func dialLoopback(ctx context.Context, network, addr string) (net.Conn, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, network, "127.0.0.1:"+port)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Microsecond):
		}
	}
}

// newH2CTransport speaks only HTTP/2 with prior knowledge over plain TCP,
// as Knative's queue-proxy does to a port named h2c: one connection, every
// request a stream on it.
func newH2CTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p, DialContext: dialLoopback, DisableCompression: true}
}

// newH1Transport speaks HTTP/1.1 over plain TCP, a kept-alive connection
// per concurrent request.
func newH1Transport() *http.Transport {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Transport{Protocols: &p, DialContext: dialLoopback, DisableCompression: true,
		MaxIdleConnsPerHost: 256}
}

// newTLSTransport speaks HTTP/1.1 over TLS to the upstream, trusting the
// bench's CA, as a client that pulls from the upstream directly.
func newTLSTransport(ca *benchCA) *http.Transport {
	return &http.Transport{TLSClientConfig: ca.clientConfig(), DialContext: dialLoopback,
		DisableCompression: true, MaxIdleConnsPerHost: 256}
}

// peer is one way to reach the upstream's content: the upstream itself,
// nginx as a proxy, or qci-appci, over one protocol.
type peer struct {
	name   string
	base   string // scheme://host:port
	client *http.Client
	token  string       // Bearer token sent on every request
	proto  int          // the HTTP major version every answer must have
	pids   func() []int // the proxy's processes, for CPU; nil for the upstream
}

func (p *peer) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.ProtoMajor != p.proto {
		resp.Body.Close()
		return nil, fmt.Errorf("%s answered over %s, want HTTP/%d", p.name, resp.Proto, p.proto)
	}
	return resp, nil
}

// copyBufSize is what Knative's queue-proxy reads a response with: its
// reverse proxy's buffer pool hands out 32 KiB buffers.
const copyBufSize = 32 << 10

// hashWriter is a sha256 that has only Write: io.CopyBuffer into it uses the
// buffer it is given (io.Discard has ReadFrom, which reads 8 KiB at a time
// whatever buffer CopyBuffer was given).
type hashWriter struct {
	h interface{ Write([]byte) (int, error) }
}

func (w hashWriter) Write(b []byte) (int, error) { return w.h.Write(b) }

// readBody reads body as queue-proxy would (32 KiB reads) into a sha256 and
// returns the digest and the byte count.
func readBody(body io.Reader, buf []byte) (string, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(hashWriter{h}, struct{ io.Reader }{body}, buf)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), n, err
}

// blobMBps downloads the blob with n clients at once, each the whole blob,
// and returns MB/s; a wrong status, length or digest is an error.
func blobMBps(p *peer, c *content, n int) (float64, error) {
	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := p.get(context.Background(), "/v2/"+repo+"/blobs/"+c.blob)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			d, m, err := readBody(resp.Body, make([]byte, copyBufSize))
			total.Add(m)
			if err != nil || resp.StatusCode != http.StatusOK || m != c.blobSize || d != c.blob {
				errs[i] = fmt.Errorf("blob through %s: status %d, %d bytes, %s, %v", p.name, resp.StatusCode, m, d, err)
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / time.Since(start).Seconds() / 1e6, errors.Join(errs...)
}

// manifestLoad runs n clients GETting path through p for d and returns
// requests per second and the proxy's CPU µs per request (0 without pids).
// Every answer must be 200 with the manifest's digest.
func manifestLoad(p *peer, path, digest string, n int, d time.Duration) (float64, float64, error) {
	var before int64
	if p.pids != nil {
		before = cpuTicks(p.pids())
	}
	var count atomic.Int64
	var failed atomic.Pointer[error]
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, copyBufSize)
			for ctx.Err() == nil {
				resp, err := p.get(ctx, path)
				if err != nil {
					if ctx.Err() == nil {
						failed.Store(&err)
					}
					return
				}
				got, _, err := readBody(resp.Body, buf)
				resp.Body.Close()
				if err == nil && (resp.StatusCode != http.StatusOK || got != digest) {
					err = fmt.Errorf("manifest through %s: status %d, digest %s", p.name, resp.StatusCode, got)
					failed.Store(&err)
					return
				}
				if err == nil {
					count.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if e := failed.Load(); e != nil {
		return 0, 0, *e
	}
	requests := float64(count.Load())
	if requests == 0 {
		return 0, 0, fmt.Errorf("manifest through %s: no request answered in %s", p.name, d)
	}
	cpu := 0.0
	if p.pids != nil {
		cpu = float64(cpuTicks(p.pids())-before) * 1e4 / requests // 100 ticks a second
	}
	return requests / elapsed, cpu, nil
}

// cpuTicks sums utime+stime of pids (clock ticks, 100 a second).
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

// cpuNanos sums the time on CPU of pid's threads (the first field of each
// /proc/PID/task/TID/schedstat, in ns): finer than clock ticks, for a
// cold start's few milliseconds.
func cpuNanos(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			n, _ := strconv.ParseInt(f[0], 10, 64)
			sum += n
		}
	}
	return sum
}

// peakRSSKiB is the process's high-water resident set (VmHWM).
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

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
