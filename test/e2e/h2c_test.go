package e2e

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestH2C: over h2c a client pulls a 64 MiB blob through the real binary,
// intact, answered over HTTP/2 (behind quay, by the CDN over h2 after the
// function passed the redirect on), and the upstream sees only the robot's
// token. The Go client tests run over h2c too (eachProtocol).
func TestH2C(t *testing.T) {
	eachUpstream(t, func(t *testing.T, w *world) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		big, err := w.up.PushBlob(ctx, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		w.up.ResetRequests()
		tr := h2cTransport()
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		tok := login(t, c, w, robotUser, robotPass)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+big.String(), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("answered over %s, want HTTP/2", resp.Proto)
		}
		digest, n, err := hashBody(resp.Body)
		if err != nil || resp.StatusCode != 200 || n != 64<<20 || digest != big.String() {
			t.Errorf("64 MiB blob over h2c: %d, %d bytes, %s, %v", resp.StatusCode, n, digest, err)
		}
		w.assertUpstreamSawOnlyRobotTokens(tok)
		w.assertCDNServed(1)
	})
}
