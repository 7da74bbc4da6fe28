package loginlimit

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzClientAddress: whatever X-Forwarded-For lines a client sends, the key
// is the peer's, or the key of a public address that stands as an entry in
// the header; never a loopback, private or link-local address the client
// wrote, and without a trusted header never anything of the header at all.
func FuzzClientAddress(f *testing.F) {
	f.Add("203.0.113.7, 10.0.0.3, 127.0.0.1", "", "192.0.2.1:4711")
	f.Add("1.2.3.4", "198.51.100.9,", "10.1.1.1:80")
	f.Add("2001:db8::1, [fe80::1]", "::1", "[::1]:8080")
	f.Add("garbage, 8.8.8.8", "", "127.0.0.1:1")
	f.Fuzz(func(t *testing.T, line1, line2, peer string) {
		r := &http.Request{Header: http.Header{}, RemoteAddr: peer}
		for _, l := range []string{line1, line2} {
			if l != "" {
				r.Header.Add("X-Forwarded-For", l)
			}
		}
		peerKey := ClientAddress(r, "")
		if untrusted := (&http.Request{RemoteAddr: peer}); ClientAddress(untrusted, "") != peerKey {
			t.Fatalf("without a trusted header the key depends on the header")
		}
		got := ClientAddress(r, "X-Forwarded-For")
		if got == peerKey {
			return
		}
		// Several entries can share a key (an IPv6 /64 holds "::" and
		// "::2"): the key is right when one public entry has it.
		matched := false
		for _, l := range []string{line1, line2} {
			for e := range strings.SplitSeq(l, ",") {
				// An entry is an address, bracketed or not, or an
				// address and port (as some proxies append them).
				e = strings.TrimSpace(e)
				addr, err := netip.ParseAddr(strings.Trim(e, "[]"))
				if err != nil {
					ap, perr := netip.ParseAddrPort(e)
					if perr != nil {
						continue
					}
					addr = ap.Addr()
				}
				addr = addr.Unmap().WithZone("")
				if addressKey(addr) != got {
					continue
				}
				matched = true
				if !(addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsUnspecified()) {
					return
				}
			}
		}
		if matched {
			t.Fatalf("key %q is a non-public address from the header %q %q", got, line1, line2)
		}
		t.Fatalf("key %q is neither the peer's (%q) nor an entry of %q %q", got, peerKey, line1, line2)
	})
}
