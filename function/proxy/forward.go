package proxy

import (
	"context"
	"io"
	"net/http"
	"net/textproto"
	"strings"
)

// forward sends the checked request upstream and streams the answer back.
// It is httputil.ReverseProxy's job, done without its per-request overhead
// and without its copy loop, which always goes through a user-space buffer:
// a body that implements io.WriterTo (the splice transport's, from a
// plain-HTTP upstream) is written with WriteTo, which hands the upstream
// socket to the ResponseWriter's ReadFrom, and the kernel splices it into
// the client's socket. Other bodies (an https upstream) are copied through a
// pooled buffer and flushed after each write, so nothing waits in a buffer.
// ctx is r's context with the public URL, for modifyResponse.
func (h *Handler) forward(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Body = nil
	out.ContentLength = 0
	out.Close = false
	removeHopByHop(out.Header)
	for k := range out.Header {
		if strings.HasPrefix(k, "X-Forwarded-") || k == "Forwarded" {
			delete(out.Header, k)
		}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default User-Agent
	}
	h.rewrite(out)
	resp, err := h.opts.Transport.RoundTrip(out)
	if err != nil {
		h.upstreamError(w, r, err)
		return
	}
	defer resp.Body.Close()
	h.modifyResponse(ctx, resp)
	removeHopByHop(resp.Header)
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if wt, ok := resp.Body.(io.WriterTo); ok {
		_, err = wt.WriteTo(w)
	} else {
		err = h.copyFlushing(w, resp.Body)
	}
	if err != nil {
		// Never end a broken body as if it were complete: abort the
		// client's connection (or HTTP/2 stream).
		if r.Context().Err() == nil {
			h.opts.Logger.WarnContext(r.Context(), "upstream body broke mid-stream", "path", r.URL.Path, "error", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// copyFlushing copies src to w through a pooled buffer, flushing after
// each write.
func (h *Handler) copyFlushing(w http.ResponseWriter, src io.Reader) error {
	bp := h.bufs.Get().(*[]byte)
	defer h.bufs.Put(bp)
	buf := *bp
	flusher, _ := w.(http.Flusher)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// hopByHop are the headers of one connection, never forwarded.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func removeHopByHop(h http.Header) {
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}
