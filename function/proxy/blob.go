package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strings"
)

// serveBlob forwards a blob GET without httputil.ReverseProxy, whose copy
// loop always goes through a user-space buffer: io.Copy hands the upstream
// body to the ResponseWriter's ReadFrom, which the splice transport turns
// into a kernel copy between the two sockets. Headers get the same
// treatment as on the ReverseProxy path (rewrite and modifyResponse).
// ctx is r's context with the public URL, for modifyResponse.
func (h *Handler) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	out := r.Clone(ctx)
	out.RequestURI = ""
	out.Body = nil
	out.ContentLength = 0
	removeHopByHop(out.Header)
	for k := range out.Header {
		if strings.HasPrefix(k, "X-Forwarded-") || k == "Forwarded" {
			delete(out.Header, k)
		}
	}
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // no Go default, as ReverseProxy does
	}
	h.rewrite(&httputil.ProxyRequest{In: r, Out: out})
	resp, err := h.opts.Transport.RoundTrip(out)
	if err != nil {
		h.upstreamError(w, r, err)
		return
	}
	defer resp.Body.Close()
	if err := h.modifyResponse(resp); err != nil {
		h.upstreamError(w, r, err)
		return
	}
	removeHopByHop(resp.Header)
	dst := w.Header()
	for k, v := range resp.Header {
		dst[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		// Never end a broken body as if it were complete.
		if r.Context().Err() == nil {
			h.opts.Logger.WarnContext(r.Context(), "upstream body broke mid-stream", "path", r.URL.Path, "error", err)
		}
		panic(http.ErrAbortHandler)
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
