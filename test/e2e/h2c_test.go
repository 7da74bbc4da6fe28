package e2e

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// h2cTransport speaks only HTTP/2 with prior knowledge over plain TCP, as
// Knative's queue-proxy and Cloud Run's front end do to a port named h2c.
func h2cTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: &p}
}

// TestH2C: over h2c a client logs in and pulls an image and a 64 MiB blob
// through the real binary, every digest intact, and the upstream sees only
// the robot's token.
func TestH2C(t *testing.T) {
	w := newWorld(t)
	img, _ := pushContent(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	big, err := w.reg.PushBlob(ctx, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	tr := h2cTransport()
	defer tr.CloseIdleConnections()

	ref, err := name.ParseReference(w.proxy.Host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: robotUser, Password: robotPass}))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		want, _ := l.Digest()
		rc, err := l.Compressed() // go-containerregistry checks the digest as it reads
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("layer %s over h2c: %v", want, err)
		}
		rc.Close()
	}
	if digestOf(t, got) != digestOf(t, img) {
		t.Errorf("manifest over h2c: %s, want %s", digestOf(t, got), digestOf(t, img))
	}

	tok := login(t, w, robotUser, robotPass)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, w.proxy.URL+"/v2/"+repo+"/blobs/"+big.String(), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Transport: tr}).Do(req)
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
}
