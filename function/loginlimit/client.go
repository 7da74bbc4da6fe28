package loginlimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddress is the key of the client that sent r. Without a trusted
// header it is the peer's address. With one (X-Forwarded-For on a platform
// whose proxies set or append to it), it is the rightmost entry that is a
// public address: entries are read from the right, across all lines of
// the header, skipping the loopback, private and link-local addresses that
// the platform's own proxies append (Knative's activator and queue-proxy
// add pod addresses and 127.0.0.1 after the client address its ingress
// appended; Cloud Run writes the client address alone). Entries left of
// that one are what the client claimed, and are never used. When an entry
// on the way is not an IP address, or none is public, the peer's address is
// used. An IPv6 address is keyed by its /64 prefix, the smallest block a
// site gets, so that one client cannot spread over 2^64 keys.
func ClientAddress(r *http.Request, trustedHeader string) string {
	if trustedHeader != "" {
		if addr, ok := rightmostPublic(r.Header.Values(trustedHeader)); ok {
			return addressKey(addr)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if addr, ok := parseAddr(host); ok {
		return addressKey(addr)
	}
	return host
}

func rightmostPublic(lines []string) (netip.Addr, bool) {
	for i := len(lines) - 1; i >= 0; i-- {
		entries := strings.Split(lines[i], ",")
		for j := len(entries) - 1; j >= 0; j-- {
			e := strings.TrimSpace(entries[j])
			if e == "" && j == len(entries)-1 && len(entries) > 1 {
				continue // a trailing comma
			}
			addr, ok := parseAddr(e)
			if !ok {
				return netip.Addr{}, false
			}
			if !(addr.IsLoopback() || addr.IsPrivate() || addr.IsLinkLocalUnicast() || addr.IsUnspecified()) {
				return addr, true
			}
		}
	}
	return netip.Addr{}, false
}

// parseAddr parses an address with or without a port or brackets.
func parseAddr(s string) (netip.Addr, bool) {
	if addr, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return addr.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

func addressKey(addr netip.Addr) string {
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}
