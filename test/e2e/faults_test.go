package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func get(t *testing.T, w *world, path, tok string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// noRedirects is a client that shows a redirect rather than following it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestUpstreamRestartAndOutage(t *testing.T) {
	eachUpstream(t, testUpstreamRestartAndOutage)
}

func testUpstreamRestartAndOutage(t *testing.T, w *world) {
	pushContent(t, w)
	tok := login(t, http.DefaultClient, w, robotUser, robotPass)
	manifest := "/v2/" + repo + "/manifests/" + tag
	if resp := get(t, w, manifest, tok); resp.StatusCode != 200 {
		t.Fatalf("before: %d", resp.StatusCode)
	}
	// The upstream restarts: its tokens become invalid; the next pull works.
	if err := w.up.Restart(); err != nil {
		t.Fatal(err)
	}
	if resp := get(t, w, manifest, tok); resp.StatusCode != 200 {
		t.Errorf("after an upstream restart: %d", resp.StatusCode)
	}
	// The upstream goes away: 503 with Retry-After, and recovery without
	// restarting the proxy.
	if err := w.up.Stop(); err != nil {
		t.Fatal(err)
	}
	resp := get(t, w, manifest, tok)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("upstream down: %d Retry-After=%q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if err := w.up.Resume(); err != nil {
		t.Fatal(err)
	}
	if resp := get(t, w, manifest, tok); resp.StatusCode != 200 {
		t.Errorf("after the upstream came back: %d", resp.StatusCode)
	}
}

// TestClusterOutage needs no upstream but the default one: logins are
// answered by the function and the cluster alone.
func TestClusterOutage(t *testing.T) {
	w := newWorld(t, distribution)
	w.cluster.SetDown(true)
	status := func(user, pass string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, w.proxy.URL+"/v2/auth?scope=repository:"+repo+":pull", nil)
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if code, retry := status("alice", aliceToken); code != http.StatusServiceUnavailable || retry == "" {
		t.Errorf("cluster login with the cluster down: %d Retry-After=%q", code, retry)
	}
	if code, _ := status(robotUser, robotPass); code != 200 {
		t.Errorf("robot login with the cluster down: %d", code)
	}
	w.cluster.SetDown(false)
	if code, _ := status("alice", aliceToken); code != 200 {
		t.Errorf("cluster login after recovery: %d", code)
	}
}

// fetchBlob streams a blob and returns its digest.
func fetchBlob(ctx context.Context, w *world, digest v1.Hash, tok string) (string, int64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+digest.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	return hashBody(resp.Body)
}

// TestBigBlobManyClients: 256 MiB pulled by 8 clients at once, all intact;
// then a client that gives up mid-blob leaves nothing open behind; then
// SIGTERM during a pull lets it finish, refuses new connections, exits 0.
// Behind distribution only: behind quay a blob's bytes never pass through
// the function (the client follows the redirect to the CDN), which
// TestBlobRedirectToCDN shows.
func TestBigBlobManyClients(t *testing.T) {
	w := newWorld(t, distribution)
	const size = 256 << 20
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	digest, err := w.up.PushBlob(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	tok := login(t, http.DefaultClient, w, robotUser, robotPass)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, n, err := fetchBlob(ctx, w, digest, tok)
			if err != nil || n != size || got != digest.String() {
				t.Errorf("client %d: %d bytes, %s, %v", i, n, got, err)
			}
		}()
	}
	wg.Wait()

	// A client that cancels mid-blob.
	before := w.proxy.OpenFDs(t)
	cctx, ccancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(cctx, http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+digest.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 8<<20); err != nil {
		t.Fatal(err)
	}
	ccancel()
	resp.Body.Close()
	client.CloseIdleConnections()
	deadline := time.Now().Add(15 * time.Second)
	for w.proxy.OpenFDs(t) > before {
		if time.Now().After(deadline) {
			t.Fatalf("open fds %d after a cancelled pull, %d before: a connection leaked", w.proxy.OpenFDs(t), before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The upstream connection of the cancelled pull was closed too: the
	// registry counts no request still in flight (Requests is appended on
	// completion), and a new pull works.
	if got, n, err := fetchBlob(ctx, w, digest, tok); err != nil || n != size || got != digest.String() {
		t.Fatalf("pull after a cancelled one: %d %v", n, err)
	}

	// SIGTERM during a pull.
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+digest.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	first, err := io.CopyN(h, resp.Body, 16<<20)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- w.proxy.Terminate(t) }()
	// New connections are refused once the drain has begun.
	deadline = time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", w.proxy.Host, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the proxy still accepts connections after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rest, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || first+rest != size || "sha256:"+hex.EncodeToString(h.Sum(nil)) != digest.String() {
		t.Errorf("the pull in flight at SIGTERM: %d bytes, %v", first+rest, err)
	}
	if err := <-exited; err != nil {
		t.Errorf("exit after SIGTERM: %v, want 0", err)
	}
}
