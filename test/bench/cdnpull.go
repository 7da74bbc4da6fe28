package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// idleCloser is a transport whose connections a pull closes when done.
type idleCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

// schemeTransport is the client of a pull through the function when the
// upstream redirects blob GETs to a CDN: http requests (to the function)
// go over h2c, as from queue-proxy, and https ones (to the CDN host a blob
// GET is redirected to) over TLS trusting the bench's CA, as the client
// fetches pre-signed URLs itself.
type schemeTransport struct{ h2c, tls *http.Transport }

func newSchemeTransport(ca *benchCA) schemeTransport {
	return schemeTransport{h2c: newH2CTransport(), tls: newTLSTransport(ca)}
}

func (t schemeTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "https" {
		return t.tls.RoundTrip(r)
	}
	return t.h2c.RoundTrip(r)
}

func (t schemeTransport) CloseIdleConnections() {
	t.h2c.CloseIdleConnections()
	t.tls.CloseIdleConnections()
}

// checkCDN checks, before anything is measured, that the redirecting
// upstream answers a blob GET with a 302 to a pre-signed URL on the CDN's
// host and that the CDN serves the blob's bytes at that URL as given, and
// refuses it with any credential a pull has (the upstream token, the
// robot's Basic credentials, a token of ours) or another signature: so a
// redirected pull that succeeds carried none of them to the CDN.
func (b *bench) checkCDN() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := &http.Client{Transport: newTLSTransport(b.ca), CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	defer client.CloseIdleConnections()
	blob := b.c.pullBlobs[1]
	get := func(u, auth string) (int, http.Header, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, body, err
	}
	status, hdr, _, err := get("https://"+upstreamHost+":"+strconv.Itoa(b.up.redirect)+blobPath+blob, "Bearer "+upstreamTok)
	if err != nil {
		return fmt.Errorf("redirecting upstream: %w", err)
	}
	loc, err := url.Parse(hdr.Get("Location"))
	if status != http.StatusFound || err != nil || loc.Host != cdnHost+":"+strconv.Itoa(b.up.cdn) || loc.Query().Get("X-Amz-Signature") == "" {
		return fmt.Errorf("redirecting upstream: blob GET answered %d, Location %q: want 302 to a pre-signed URL on %s", status, hdr.Get("Location"), cdnHost)
	}
	tampered := *loc
	q := tampered.Query()
	q.Set("X-Amz-Signature", strings.Repeat("0", 64))
	tampered.RawQuery = q.Encode()
	robot := "Basic " + base64.StdEncoding.EncodeToString([]byte(robotUser+":"+robotPass))
	for _, c := range []struct {
		what, url, auth string
		want            int
	}{
		{"the pre-signed URL", loc.String(), "", http.StatusOK},
		{"the pre-signed URL with the upstream token", loc.String(), "Bearer " + upstreamTok, http.StatusBadRequest},
		{"the pre-signed URL with the robot's credentials", loc.String(), robot, http.StatusBadRequest},
		{"the pre-signed URL with a token of ours", loc.String(), "Bearer " + b.fn.token, http.StatusBadRequest},
		{"another signature", tampered.String(), "", http.StatusForbidden},
	} {
		status, _, body, err := get(c.url, c.auth)
		if err != nil {
			return fmt.Errorf("CDN, %s: %w", c.what, err)
		}
		if status != c.want {
			return fmt.Errorf("CDN, %s: %d, want %d", c.what, status, c.want)
		}
		if s := sha256.Sum256(body); status == http.StatusOK && "sha256:"+hex.EncodeToString(s[:]) != blob {
			return fmt.Errorf("CDN, %s: body's digest is not %s", c.what, blob)
		}
	}
	return nil
}

// coldPullsCDN is coldPulls on quay.io's shape, runs times interleaved:
// the 3-layer pull straight from the redirecting upstream (a fresh TLS
// client following each blob's 302 to the CDN) and through a qci-appci
// exec'd just before it, over h2c (the clock starts at the exec), then by
// a fresh client through that running instance. Each cold pull must
// fetch the upstream token once and have every blob GET answered with a
// 302 and served by the CDN; the first one's upstream and CDN requests
// are listed.
func (b *bench) coldPullsCDN(p *production, runs int) error {
	directRef := upstreamHost + ":" + strconv.Itoa(b.up.redirect) + "/" + repo + ":" + pullTag
	var directs, colds, extra, warms []float64
	for i := range runs {
		tr := newTLSTransport(b.ca)
		start := time.Now()
		err := pull(directRef, tr)
		d := ms(time.Since(start))
		tr.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("direct, blobs redirected: %w", err)
		}

		_, ups := logLines(b.redirectLog, 0)
		_, cdns := logLines(b.cdnLog, 0)
		c, f, tokens, err := b.execPull(b.up.redirect, newSchemeTransport(b.ca))
		if err != nil {
			return fmt.Errorf("blobs redirected: %w", err)
		}
		up, _ := logLines(b.redirectLog, ups)
		cdn, _ := logLines(b.cdnLog, cdns)
		p.TokenFetchesCDN = append(p.TokenFetchesCDN, tokens)
		if i == 0 {
			p.CDNColdPullUpstream, p.CDNColdPullCDN = up, cdn
		}
		if err := b.checkRedirected(up, cdn); err != nil {
			f.stop()
			return fmt.Errorf("cold pull %d through qci-appci: %w", i+1, err)
		}

		st := newSchemeTransport(b.ca)
		start = time.Now()
		err = pull(f.host+"/"+repo+":"+pullTag, st)
		warms = append(warms, ms(time.Since(start)))
		st.CloseIdleConnections()
		f.stop()
		if err != nil {
			return fmt.Errorf("blobs redirected, through a running qci-appci: %w", err)
		}
		directs, colds, extra = append(directs, d), append(colds, c), append(extra, c-d)
	}
	p.CDNDirectPullMs, p.CDNColdPullMs, p.CDNColdPullExtraMs = round(median(directs)), round(median(colds)), round(median(extra))
	p.CDNWarmPullMs = round(median(warms))
	return nil
}

// checkRedirected checks the access-log lines ("METHOD URI STATUS BYTES")
// of one pull through the function on quay.io's shape: every blob GET the
// upstream was asked answered 302, one for each blob of the image, and the
// CDN answering each of them 200 (the pull checks every blob's digest).
func (b *bench) checkRedirected(up, cdn []string) error {
	var blobs int
	for _, l := range up {
		f := strings.Fields(l)
		if len(f) != 4 || !strings.HasPrefix(f[1], blobPath) {
			continue
		}
		if blobs++; f[2] != "302" {
			return fmt.Errorf("upstream answered %q, want a 302 to the CDN", l)
		}
	}
	if blobs != len(b.c.pullBlobs) {
		return fmt.Errorf("%d blob GETs reached the upstream, want %d: %q", blobs, len(b.c.pullBlobs), up)
	}
	if len(cdn) != len(b.c.pullBlobs) {
		return fmt.Errorf("the CDN was asked %d times, want %d: %q", len(cdn), len(b.c.pullBlobs), cdn)
	}
	for _, l := range cdn {
		if f := strings.Fields(l); len(f) != 4 || f[2] != "200" {
			return fmt.Errorf("CDN answered %q, want 200", l)
		}
	}
	return nil
}
