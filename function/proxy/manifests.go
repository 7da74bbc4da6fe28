package proxy

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/qci-appci/qci-appci/function/manifestcache"
	"github.com/qci-appci/qci-appci/function/registry"
)

// cacheable reports whether a checked request may be answered from, and
// its answer kept in, the digest manifest cache: a plain manifest read by
// sha256 digest. A Range or conditional read always goes upstream.
func (h *Handler) cacheable(r *http.Request, fw forwarded) bool {
	if h.opts.Manifests == nil || fw.route.Kind != registry.KindManifest || !manifestcache.ValidDigest(fw.route.Reference) {
		return false
	}
	for _, k := range []string{"Range", "If-Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since"} {
		if _, ok := r.Header[k]; ok {
			return false
		}
	}
	return true
}

// accepts reports whether a client's Accept header admits contentType: no
// Accept at all, */*, type/*, or the type itself.
func accepts(accept []string, contentType string) bool {
	if len(accept) == 0 {
		return true
	}
	ct, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	major, _, _ := strings.Cut(ct, "/")
	for _, v := range accept {
		for mr := range strings.SplitSeq(v, ",") {
			mr, _, _ = strings.Cut(mr, ";")
			mr = strings.ToLower(strings.TrimSpace(mr))
			if mr == "*/*" || mr == ct || mr == major+"/*" {
				return true
			}
		}
	}
	return false
}

// writeCached answers a GET or HEAD of a manifest from the cache, with the
// headers a client needs; the digest is the one its body was verified
// against, not anything the upstream said.
func writeCached(w http.ResponseWriter, r *http.Request, digest string, e manifestcache.Entry) {
	hdr := w.Header()
	if e.ContentType != "" {
		hdr["Content-Type"] = []string{e.ContentType}
	}
	hdr["Content-Length"] = []string{strconv.Itoa(len(e.Body))}
	hdr["Docker-Content-Digest"] = []string{digest}
	hdr["Etag"] = []string{`"` + digest + `"`}
	registry.SetAPIVersion(hdr)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}

// captureBody keeps a copy of what is read through it, up to
// manifestcache.MaxEntryBytes; past that it keeps nothing (over).
type captureBody struct {
	r    io.Reader
	buf  []byte
	over bool
}

func newCaptureBody(r io.Reader, contentLength int64) *captureBody {
	c := &captureBody{r: r}
	if contentLength > 0 {
		c.buf = make([]byte, 0, contentLength)
	}
	return c
}

func (c *captureBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && !c.over {
		if len(c.buf)+n > manifestcache.MaxEntryBytes {
			c.over, c.buf = true, nil
		} else {
			c.buf = append(c.buf, p[:n]...)
		}
	}
	return n, err
}
