package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
)

const (
	tableStart = "<!-- results:start -->"
	tableEnd   = "<!-- results:end -->"
)

// writeReadmeTables rewrites what lies between the markers of path.
func writeReadmeTables(path string, r *results) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, tableStart), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s markers", path, tableStart, tableEnd)
	}
	s = s[:i] + tables(r) + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}

func tables(r *results) string {
	kind := "full run"
	if r.Quick {
		kind = "quick run (-quick: one round of each, 32 MiB blob, 0.5 s manifest loads, 3 cold runs; noisy)"
	}
	p, q := r.Production, r.PlainHTTP
	var t strings.Builder
	fmt.Fprintf(&t, "%s\nMeasured %s on %s (%s, Go %s, commit %s, blob %d MiB).\n\n", tableStart, r.Date, r.Machine, kind, r.GoVersion, r.Commit, r.BlobSizeMiB)
	t.WriteString("**Production path**: TLS upstream; clients over h2c (as queue-proxy) and HTTP/1.1.\n\n")
	t.WriteString("| measure | upstream direct (TLS) | nginx as proxy, h2c | qci-appci, h2c | nginx as proxy, HTTP/1.1 | qci-appci, HTTP/1.1 |\n|---|---|---|---|---|---|\n")
	row := rowWriter(&t, direct, nginxH2C, qciH2C, nginxH1, qciH1)
	row("blob MB/s, 1 client", p.BlobMBps1, "%.0f")
	row("blob MB/s, 8 clients", p.BlobMBps8, "%.0f")
	row("proxy CPU s per GB of blob, 1 client", p.BlobCPU1, "%.2f")
	row("proxy CPU s per GB of blob, 8 clients", p.BlobCPU8, "%.2f")
	row("whole path's CPU s per GB (upstream + proxy + client), 1 client", p.PathCPU1, "%.2f")
	row("whole path's CPU s per GB, 8 clients", p.PathCPU8, "%.2f")
	row("manifest GETs/s by tag, 64 clients", p.ManifestGETsPerS, "%.0f")
	row("proxy CPU µs per manifest GET by tag", p.ManifestCPUus, "%.1f")
	row("manifest GETs/s by digest, 64 clients", p.DigestGETsPerS, "%.0f")
	row("proxy CPU µs per manifest GET by digest", p.DigestCPUus, "%.1f")
	if v, ok := p.DigestCPUus[goFloor]; ok {
		fmt.Fprintf(&t, "| CPU µs per GET of a Go server that imports only net/http and answers `{}` over h2c (the floor of any Go h2c server) | | | %.1f (%.0f GETs/s) | | |\n", v, p.DigestGETsPerS[goFloor])
	}
	fmt.Fprintf(&t, "| peak RSS MiB, 8 blob streams (h2c, fresh instance) | | | %.1f | | |\n", p.RSSMiB8Streams)
	fmt.Fprintf(&t, "| cold start: exec to first `/v2/` 200, ms (the process's CPU ms in it), median | | | %.1f (%.1f); a net/http-only Go server: %.1f (%.1f) | | |\n", p.ColdStartMsV2, p.ColdStartCPUMsV2, p.ColdStartMsFloor, p.ColdStartCPUMsFloor)
	fmt.Fprintf(&t, "| cold start: exec to first manifest proxied over TLS, ms (the process's CPU ms in it) | | | %.1f (%.1f) | | |\n", p.ColdStartMsMfst, p.ColdStartCPUMs)
	fmt.Fprintf(&t, "| the same with `SSL_CERT_DIR` an empty directory (the roots read from `SSL_CERT_FILE` only) | | | %.1f (%.1f) | | |\n", p.ColdStartMsMfstNoDir, p.ColdStartCPUMsNoDir)
	fmt.Fprintf(&t, "| 3-layer pull (go-containerregistry), ms (median) | %.1f | | %.1f from exec (+%.1f) | | |\n", p.DirectPullMs, p.ColdPullMs, p.ColdPullExtraMs)
	fmt.Fprintf(&t, "| the same pull by a fresh client through an instance already running, ms (median) | | | %.1f | | %.1f |\n", p.WarmPullMs, p.WarmPullMsH1)
	fmt.Fprintf(&t, "| the same with `SSL_CERT_DIR` an empty directory, ms beyond the direct pull (median) | | | +%.1f | | |\n", p.ColdPullExtraMsNoDir)
	fmt.Fprintf(&t, "| upstream requests of a cold pull | | | %d: %s | | |\n", len(p.ColdPullUpstream), shortDigests(strings.Join(p.ColdPullUpstream, "; ")))
	fmt.Fprintf(&t, "| upstream requests of the next pulls through that instance: by digest, again by digest (warm), by tag | | | %d, %d (%s), %d | | |\n",
		len(p.FirstDigestUp), len(p.WarmDigestUp), shortDigests(strings.Join(p.WarmDigestUp, "; ")), len(p.WarmTagUp))
	fmt.Fprintf(&t, "| upstream token fetches: each cold pull; 100 concurrent cold requests | | | %v; %d | | |\n", p.TokenFetchesPull, p.TokenFetches100)
	fmt.Fprintf(&t, "| 3-layer pull, blobs redirected to a CDN as quay.io does (302 to a pre-signed URL), ms (median) | %.1f | | %.1f from exec (+%.1f) | | |\n", p.CDNDirectPullMs, p.CDNColdPullMs, p.CDNColdPullExtraMs)
	fmt.Fprintf(&t, "| the same redirected pull by a fresh client through an instance already running (h2c), ms (median) | | | %.1f | | |\n", p.CDNWarmPullMs)
	fmt.Fprintf(&t, "| upstream requests of a redirected cold pull (method, URI, status, body bytes) | | | %d: %s | | |\n", len(p.CDNColdPullUpstream), shortDigests(strings.Join(p.CDNColdPullUpstream, "; ")))
	fmt.Fprintf(&t, "| the CDN's requests of that pull (from the client, not the function) | | | %d: %s | | |\n", len(p.CDNColdPullCDN), shortHex(strings.Join(p.CDNColdPullCDN, "; ")))
	fmt.Fprintf(&t, "| upstream token fetches: each redirected cold pull | | | %v | | |\n", p.TokenFetchesCDN)

	t.WriteString("\n**Targets** (ratios of samples taken one right after the other, medians):\n\n| target | measured | want | met |\n|---|---|---|---|\n")
	for _, g := range r.Targets {
		met := "no"
		if g.Met {
			met = "yes"
		}
		fmt.Fprintf(&t, "| %s | %.2f | %s | %s |\n", g.Name, g.Value, g.Want, met)
	}
	fmt.Fprintf(&t, "\nOver HTTP/1.1 from the front: blob %.2f× direct with 1 client, %.2f× with 8; CPU per manifest GET %.2f× nginx's.\n",
		p.RatioH1Blob1, p.RatioH1Blob8, p.RatioH1CPU)

	t.WriteString("\n**Secondary: plain-HTTP upstream**, HTTP/1.1 clients (no documented deployment has this shape).\n\n")
	t.WriteString("| measure | upstream direct | nginx as proxy | qci-appci |\n|---|---|---|---|\n")
	prow := rowWriter(&t, directP, nginxP, qciPlain)
	prow("blob MB/s, 1 client", q.BlobMBps1, "%.0f")
	prow("blob MB/s, 8 clients", q.BlobMBps8, "%.0f")
	prow("proxy CPU s per GB of blob, 1 client", q.BlobCPU1, "%.2f")
	prow("proxy CPU s per GB of blob, 8 clients", q.BlobCPU8, "%.2f")
	prow("whole path's CPU s per GB, 1 client", q.PathCPU1, "%.2f")
	prow("whole path's CPU s per GB, 8 clients", q.PathCPU8, "%.2f")
	prow("manifest GETs/s, 64 clients", q.ManifestGETsPerS, "%.0f")
	prow("proxy CPU µs per manifest GET", q.ManifestCPUus, "%.1f")
	return t.String()
}

// rowWriter returns a function that writes one row of a table whose
// columns are peers: the measure's name, then each peer's value in m
// formatted with f, empty where m has none.
func rowWriter(t *strings.Builder, peers ...string) func(name string, m map[string]float64, f string) {
	return func(name string, m map[string]float64, f string) {
		fmt.Fprintf(t, "| %s |", name)
		for _, k := range peers {
			cell := ""
			if v, ok := m[k]; ok {
				cell = fmt.Sprintf(f, v)
			}
			fmt.Fprintf(t, " %s |", cell)
		}
		t.WriteString("\n")
	}
}

var digestRE = regexp.MustCompile(`sha256:([0-9a-f]{12})[0-9a-f]{52}`)

var hexPathRE = regexp.MustCompile(`/([0-9a-f]{12})[0-9a-f]{52}\b`)

// shortHex abbreviates the hex digests that are path elements in s (the
// CDN's blob paths) for a table cell.
func shortHex(s string) string { return hexPathRE.ReplaceAllString(s, "/$1…") }

// shortDigests abbreviates the digests in s for a table cell.
func shortDigests(s string) string { return digestRE.ReplaceAllString(s, "sha256:$1…") }
