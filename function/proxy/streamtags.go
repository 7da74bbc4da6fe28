package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/qci-appci/qci-appci/function/registry"
	"github.com/qci-appci/qci-appci/function/requestinfo"
)

// Paging of an image stream's tags/list.
const (
	// maxStreamTags is the most tags one answer holds, and the page when the
	// client names no n; a client gets the rest by following the Link.
	maxStreamTags = 1000
	// upstreamTagsPage is the n asked of the upstream: quay.io's largest.
	upstreamTagsPage = 100
	// maxUpstreamPages bounds the upstream pages read for one answer; past
	// it the answer ends early with a Link where it stopped.
	maxUpstreamPages = 20
	// maxTagsBody bounds one upstream tags/list body.
	maxTagsBody = 1 << 20
)

// tagList is the tags/list body of the distribution spec.
type tagList struct {
	Name string   `json:"name"`
	Tags []string `json:"tags"`
}

// errUpstreamStatus is an upstream tags/list answer other than 200.
type errUpstreamStatus struct{ status int }

func (e *errUpstreamStatus) Error() string {
	return "upstream tags/list answered " + strconv.Itoa(e.status)
}

// streamTags answers tags/list of an image stream: its tags (the part
// after "<ns>_<name>_", those ImageStream.TagOf accepts), sorted as the
// upstream sorts, paginated with n and last and a Link on our host. It
// reads the upstream's sorted tag list from the stream's prefix on
// (last=<ns>_<name>_<client's last>), page after page, until it has one
// tag more than asked or the prefix ends: never the whole mirror.
func (h *Handler) streamTags(w http.ResponseWriter, r *http.Request, fw forwarded, s registry.ImageStream) {
	q := r.URL.Query()
	n := maxStreamTags
	if v := q.Get("n"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		if err != nil || n < 0 {
			registry.WriteError(w, http.StatusBadRequest, registry.CodePaginationInvalid, "n must be a number of tags, 0 or more")
			return
		}
		n = min(n, maxStreamTags)
	}
	last := q.Get("last")
	if len(last) > 128 || strings.ContainsAny(last, "/?#&% \t") {
		registry.WriteError(w, http.StatusBadRequest, registry.CodeUnsupported, "last must be a tag")
		return
	}
	tags, next := []string{}, ""
	var err error
	if n > 0 {
		tags, next, err = h.collectStreamTags(r.Context(), r, fw, s, last, n)
	}
	if err != nil {
		var st *errUpstreamStatus
		switch {
		case errors.As(err, &st) && st.status == http.StatusNotFound:
			registry.WriteError(w, http.StatusNotFound, registry.CodeNameUnknown, "repository "+s.Repository()+" is not known upstream")
		case errors.As(err, &st) && st.status == http.StatusTooManyRequests:
			registry.WriteError(w, http.StatusTooManyRequests, registry.CodeTooManyRequests, "the upstream registry asks to slow down")
		default:
			h.upstreamError(w, r, err)
		}
		return
	}
	if len(tags) == 0 && last == "" && n > 0 {
		registry.WriteError(w, http.StatusNotFound, registry.CodeNameUnknown, "image stream "+s.Repository()+" has no tag in the mirror")
		return
	}
	body, err := json.Marshal(tagList{Name: s.Repository(), Tags: tags})
	if err != nil {
		h.upstreamError(w, r, fmt.Errorf("proxy: encode tags: %w", err))
		return
	}
	body = append(body, '\n')
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	registry.SetAPIVersion(hdr)
	if next != "" {
		u := url.URL{Scheme: fw.scheme, Host: fw.host, Path: "/v2/" + s.Repository() + "/tags/list",
			RawQuery: url.Values{"n": {strconv.Itoa(n)}, "last": {next}}.Encode()}
		hdr.Set("Link", "<"+u.String()+`>; rel="next"`)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// collectStreamTags reads upstream pages after the stream's prefix plus
// last and returns up to n of the stream's tags, and the last to continue
// from ("" when the stream has no more); n is positive.
func (h *Handler) collectStreamTags(ctx context.Context, r *http.Request, fw forwarded, s registry.ImageStream, last string, n int) ([]string, string, error) {
	prefix := s.TagPrefix()
	cursor := prefix + last
	tags := []string{}
	for range maxUpstreamPages {
		page, more, err := h.upstreamTagsPage(ctx, r, fw, cursor)
		if err != nil {
			return nil, "", err
		}
		for _, up := range page {
			if up <= cursor {
				// not sorted after the cursor: the upstream does not page
				// as the spec says, so stop rather than loop
				return tags, "", nil
			}
			if !strings.HasPrefix(up, prefix) {
				return tags, "", nil // sorted: the prefix has ended
			}
			cursor = up
			t, ok := s.TagOf(up)
			if !ok {
				continue
			}
			if len(tags) == n {
				return tags, tags[n-1], nil // one more exists
			}
			tags = append(tags, t)
		}
		if !more || len(page) == 0 {
			return tags, "", nil
		}
	}
	// Stopped early: continue where the upstream reading stopped.
	return tags, strings.TrimPrefix(cursor, prefix), nil
}

// upstreamTagsPage asks the upstream for one page of its tags after last,
// and says whether its answer points at a next page (a Link header).
func (h *Handler) upstreamTagsPage(ctx context.Context, r *http.Request, fw forwarded, last string) ([]string, bool, error) {
	out, err := http.NewRequestWithContext(ctx, http.MethodGet, "", nil)
	if err != nil {
		return nil, false, fmt.Errorf("proxy: build upstream tags request: %w", err)
	}
	out.URL = &url.URL{
		Scheme:   h.opts.Upstream.Scheme,
		Host:     h.opts.Upstream.Host,
		Path:     fw.route.Path(),
		RawQuery: url.Values{"n": {strconv.Itoa(upstreamTagsPage)}, "last": {last}}.Encode(),
	}
	out.Header = http.Header{"Accept": {"application/json"}, "User-Agent": {r.Header.Get("User-Agent")}}
	resp, err := h.opts.Transport.RoundTrip(out)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	requestinfo.SetUpstreamStatus(ctx, resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxTagsBody))
		return nil, false, &errUpstreamStatus{status: resp.StatusCode}
	}
	var list tagList
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxTagsBody)).Decode(&list); err != nil {
		return nil, false, fmt.Errorf("proxy: decode upstream tags/list: %w", err)
	}
	return list.Tags, resp.Header.Get("Link") != "", nil
}
