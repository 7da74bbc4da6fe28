package server

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// accessEntry is what one access line says about a request.
type accessEntry struct {
	time           time.Time
	method         string
	path           string
	status         int
	size           int64
	latency        time.Duration
	remoteIP       string
	userAgent      string
	protocol       string
	user           string
	cluster        string
	upstreamStatus int
}

// appendAccessLine appends e to b as one JSON line with the keys that
// NewLogger's lines have (time, severity, message) and Cloud Logging's
// httpRequest. It is written by hand because it runs once a request:
// log/slog takes 18 allocations for it, this none beyond b's growth.
func appendAccessLine(b []byte, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = e.time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","severity":"INFO","message":"request","httpRequest":{"requestMethod":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"requestUrl":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"responseSize":"`...)
	b = strconv.AppendInt(b, e.size, 10)
	b = append(b, `","latency":"`...)
	b = strconv.AppendFloat(b, e.latency.Seconds(), 'f', 6, 64)
	b = append(b, `s","remoteIp":`...)
	b = appendJSONString(b, e.remoteIP)
	b = append(b, `,"userAgent":`...)
	b = appendJSONString(b, e.userAgent)
	b = append(b, `,"protocol":`...)
	b = appendJSONString(b, e.protocol)
	b = append(b, `},"user":`...)
	b = appendJSONString(b, e.user)
	if e.cluster != "" {
		b = append(b, `,"cluster":`...)
		b = appendJSONString(b, e.cluster)
	}
	b = append(b, `,"upstream_status":`...)
	b = strconv.AppendInt(b, int64(e.upstreamStatus), 10)
	return append(b, "}\n"...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, so that
// whatever a client puts in its path or User-Agent stays one valid line.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
