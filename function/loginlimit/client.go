package loginlimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddress is the key of the client that sent r. Without a trusted
// header it is the peer's address. With one (such as X-Forwarded-For on a
// platform that sets it), it is the last entry of the header's last line:
// the one the platform's own proxy appended (Knative's Envoy) or wrote
// (Cloud Run), which a client cannot forge; entries before it are what
// the client claimed. When that entry is not an IP address, the peer is
// used. An IPv6 address is keyed by its /64 prefix, the smallest block a
// site gets, so that one client cannot spread over 2^64 keys.
func ClientAddress(r *http.Request, trustedHeader string) string {
	if trustedHeader != "" {
		if values := r.Header.Values(trustedHeader); len(values) > 0 {
			last := values[len(values)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if key, ok := addressKey(strings.TrimSpace(last)); ok {
				return key
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if key, ok := addressKey(host); ok {
		return key
	}
	return host
}

func addressKey(s string) (string, bool) {
	addr, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(s); err2 == nil {
			addr = ap.Addr()
		} else {
			return "", false
		}
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String(), true
	}
	return addr.String(), true
}
