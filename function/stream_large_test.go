//go:build !race

// The race detector slows byte-heavy work twentyfold, so this test runs in
// make unit's second, race-free go test invocation.

package function_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLargeBlobStreamsWithSmallHeap streams 64 MiB and checks the digest,
// sampling the heap meanwhile: a proxy that buffered the body would grow it
// by the blob's size.
func TestLargeBlobStreamsWithSmallHeap(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	const size = 64 << 20
	ctx := context.Background()
	digest, err := e.reg.PushBlob(ctx, size)
	if err != nil {
		t.Fatal(err)
	}
	tok := e.pullToken()
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/openshift/ci/blobs/"+digest.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	close(stop)
	wg.Wait()
	if err != nil || n != size || resp.StatusCode != 200 {
		t.Fatalf("read %d bytes, status %d: %v", n, resp.StatusCode, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest.String() {
		t.Errorf("digest %s, want %s", got, digest)
	}
	if grew := int64(peak.Load()) - int64(base.HeapInuse); grew > 24<<20 {
		t.Errorf("heap grew by %d MiB while streaming %d MiB", grew>>20, size>>20)
	}
}
