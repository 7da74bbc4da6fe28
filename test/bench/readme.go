package main

import (
	"fmt"
	"os"
	"strings"
)

const (
	tableStart = "<!-- results:start -->"
	tableEnd   = "<!-- results:end -->"
)

// writeReadmeTable rewrites the table between the markers of path.
func writeReadmeTable(path string, r results) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, tableStart), strings.Index(s, tableEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s markers", path, tableStart, tableEnd)
	}
	kind := "full run"
	if r.Quick {
		kind = "quick run (BENCH_QUICK=1)"
	}
	var t strings.Builder
	fmt.Fprintf(&t, "%s\nMeasured %s on %s (%s, Go %s, blob %d MiB).\n\n", tableStart, r.Date, r.Machine, kind, r.GoVersion, r.BlobSizeMiB)
	t.WriteString("| measure | upstream direct | nginx as proxy | qci-appci | target |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&t, "| blob MB/s, 1 client | %.0f | %.0f | %.0f (%.2f× direct) | ≥ 0.9× direct |\n", r.BlobMBpsDirect, r.BlobMBpsNginx, r.BlobMBpsProxy, r.BlobRatioDirect)
	fmt.Fprintf(&t, "| blob MB/s, 16 clients | %.0f | %.0f | %.0f (%.2f× direct) | ≥ 0.9× direct |\n", r.BlobMBpsDirect16, r.BlobMBpsNginx16, r.BlobMBpsProxy16, r.BlobRatioDirect16)
	fmt.Fprintf(&t, "| manifest GETs/s, 64 clients | %.0f | %.0f | %.0f | |\n", r.ManifestRPSDirect, r.ManifestRPSNginx, r.ManifestRPSProxy)
	fmt.Fprintf(&t, "| CPU µs per manifest GET | | %.1f | %.1f | ≤ 35 µs |\n", r.ManifestCPUusNginx, r.ManifestCPUusProxy)
	fmt.Fprintf(&t, "| peak RSS MiB, 64 blob streams | | | %.1f | ≤ 32 MiB |\n", r.RSSMiB64Streams)
	fmt.Fprintf(&t, "| cold start to first /v2/ 200, ms (median of 10) | %.1f (a net/http-only Go server) | | %.1f | ≤ 15 ms |\n", r.ColdStartMsGoFloor, r.ColdStartMsV2)
	fmt.Fprintf(&t, "| cold start to first proxied manifest, ms | | | %.1f | |\n", r.ColdStartMsManifest)
	fmt.Fprintf(&t, "| logins/s (robot, 16 clients) | | | %.0f | |\n", r.LoginsPerSecond)
	fmt.Fprintf(&t, "| upstream token fetches, 100 concurrent cold requests | | | %d | exactly 1 |\n", r.UpstreamTokenFetches)
	s = s[:i] + t.String() + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
