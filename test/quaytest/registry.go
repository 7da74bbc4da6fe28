package quaytest

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// repoPattern is a quay namespace/repository name.
var repoPattern = regexp.MustCompile(`^[a-z0-9_.-]+/[a-z0-9_.-]+$`)

// apiVersion is the header quay sets on every v2 auth answer.
const apiVersion = "registry/2.0"

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func record(req *http.Request, rec *statusRecorder) Request {
	return Request{Method: req.Method, Host: req.Host, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
		Header: req.Header.Clone(), Status: rec.status, Answer: rec.Header().Clone()}
}

func (s *Server) handleRegistry(w http.ResponseWriter, req *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		s.mu.Lock()
		s.requests = append(s.requests, record(req, rec))
		s.mu.Unlock()
	}()
	s.mu.Lock()
	limited, retryAfter, cookie := s.limited > 0, s.retryAfter, s.cookie
	if limited {
		s.limited--
	}
	s.mu.Unlock()
	if cookie != nil {
		http.SetCookie(rec, cookie)
	}
	if limited {
		// quay.io's nginx limit_req (conf/nginx/rate-limiting.conf.jnj,
		// limit_req_status 429) answers with nginx's own HTML page.
		rec.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
		rec.Header().Set("Content-Type", "text/html")
		rec.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(rec, "<html>\r\n<head><title>429 Too Many Requests</title></head>\r\n<body>\r\n<center><h1>429 Too Many Requests</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
		return
	}
	p := req.URL.EscapedPath()
	switch {
	case p == "/v2/":
		s.ping(rec, req)
	case p == "/v2/auth":
		s.issueToken(rec, req)
	case strings.HasPrefix(p, "/v2/"):
		s.repository(rec, req, strings.TrimPrefix(p, "/v2/"))
	default:
		http.NotFound(rec, req)
	}
}

// challenge is get_auth_headers (auth/registry_jwt_auth.py).
func (s *Server) challenge(h http.Header, repository string) {
	c := fmt.Sprintf(`Bearer realm="%s",service="%s"`, s.Realm(), s.Host())
	if repository != "" {
		c += fmt.Sprintf(`,scope="repository:%s:pull"`, repository)
	}
	h.Set("WWW-Authenticate", c)
	h.Set("Docker-Distribution-API-Version", apiVersion)
}

// v2Error writes quay's V2RegistryException body (endpoints/v2/errors.py);
// a 401 carries the challenge.
func (s *Server) v2Error(w http.ResponseWriter, status int, code, message, repository string) {
	if status == http.StatusUnauthorized {
		s.challenge(w.Header(), repository)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"code": code, "message": message, "detail": map[string]any{}}}})
}

// abort401 is util/http.py's abort(401, ...), which quay's JWT check raises
// for a token it cannot verify: {"error": …}, as text/html, with CORS headers.
func (s *Server) abort401(w http.ResponseWriter, message, repository string) {
	s.challenge(w.Header(), repository)
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	h.Set("Access-Control-Max-Age", "21600")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Vary", "Origin")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	b, _ := json.Marshal(map[string]string{"error": message})
	_, _ = w.Write(b)
}

// ping is v2_support_enabled: "true", 401 without a valid token.
func (s *Server) ping(w http.ResponseWriter, req *http.Request) {
	status := http.StatusOK
	if _, err := s.verify(req); err != nil {
		if req.Header.Get("Authorization") != "" {
			s.abort401(w, err.Error(), "")
			return
		}
		status = http.StatusUnauthorized
	}
	s.challenge(w.Header(), "")
	w.Header().Set("X-Sparse-Manifest-Support", "false")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "true")
}

// repository routes /v2/<namespace>/<repo>/{tags/list,manifests/<ref>,blobs/<digest>}.
func (s *Server) repository(w http.ResponseWriter, req *http.Request, rest string) {
	var repo, kind, ref string
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		repo, kind = strings.TrimSuffix(rest, "/tags/list"), "tags"
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		repo, kind, ref = rest[:i], "manifests", rest[i+len("/manifests/"):]
	case strings.Contains(rest, "/blobs/"):
		i := strings.LastIndex(rest, "/blobs/")
		repo, kind, ref = rest[:i], "blobs", rest[i+len("/blobs/"):]
	default:
		http.NotFound(w, req)
		return
	}
	if !repoPattern.MatchString(repo) || (kind == "blobs" && !digestPattern.MatchString(ref)) ||
		(kind == "manifests" && !digestPattern.MatchString(ref) && !tagPattern.MatchString(ref)) {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		s.v2Error(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "The operation is unsupported.", "")
		return
	}
	claims, err := s.verify(req)
	if err != nil && req.Header.Get("Authorization") != "" {
		s.abort401(w, err.Error(), repo)
		return
	}
	// require_repo_read: a private repository, or one that does not exist,
	// is 401 without a token that grants pull on it.
	if err != nil || repo != s.opts.Repository || !claims.canPull(repo, s.Host()) {
		s.v2Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the requested resource is not authorized", repo)
		return
	}
	switch kind {
	case "tags":
		s.listTags(w, req, repo)
	case "manifests":
		s.serveManifest(w, req, ref)
	case "blobs":
		s.serveBlob(w, req, ref, claims.Subject)
	}
}

// listTags is list_all_tags under oci_tag_paginate (endpoints/v2/tag.py,
// endpoints/v2/__init__.py): tags ordered by name after last, at most
// n (≤ PageSize, default PageSize; an n that is not a number is the
// default), and a Link to the next page when there is one.
func (s *Server) listTags(w http.ResponseWriter, req *http.Request, repo string) {
	q := req.URL.Query()
	limit := s.opts.PageSize
	if n, err := strconv.Atoi(q.Get("n")); err == nil && q.Has("n") {
		limit = max(min(n, s.opts.PageSize), 0)
	}
	last := strings.TrimSpace(q.Get("last"))
	s.mu.Lock()
	names := make([]string, 0, len(s.tags))
	for t := range s.tags {
		if !q.Has("last") || t > last {
			names = append(names, t)
		}
	}
	absolute := s.absoluteLinks
	s.mu.Unlock()
	sort.Strings(names)
	page, hasMore := []string{}, false
	if limit > 0 {
		hasMore = len(names) > limit
		page = names[:min(limit, len(names))]
		if hasMore {
			// urlencode({"n": limit, "last": …}) joined to
			// os.path.join(get_app_url(), url_for(...)): url_for is an
			// absolute path, so os.path.join keeps only the path.
			link := "/v2/" + repo + "/tags/list"
			if absolute {
				link = s.URL() + link
			}
			w.Header().Set("Link", fmt.Sprintf(`<%s?n=%d&last=%s>; rel="next"`, link, limit, url.QueryEscape(page[len(page)-1])))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": page})
}

// accepts reports whether the Accept header lists mediaType.
func accepts(req *http.Request, mediaType string) bool {
	for _, v := range req.Header.Values("Accept") {
		for _, one := range strings.Split(v, ",") {
			mt, _, _ := strings.Cut(one, ";")
			if strings.TrimSpace(mt) == mediaType {
				return true
			}
		}
	}
	return false
}

// serveManifest is fetch_manifest_by_tagname and fetch_manifest_by_digest
// (endpoints/v2/manifest.py); Flask answers HEAD through the GET route.
func (s *Server) serveManifest(w http.ResponseWriter, req *http.Request, ref string) {
	byDigest := digestPattern.MatchString(ref)
	s.mu.Lock()
	d := ref
	if !byDigest {
		d = s.tags[ref]
	}
	m, ok := s.manifests[d]
	s.mu.Unlock()
	if !ok {
		s.v2Error(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", "")
		return
	}
	// By tag, a manifest whose type the client does not accept would be
	// converted to schema 1; this server stores nothing convertible.
	if !byDigest && !accepts(req, m.mediaType) {
		s.v2Error(w, http.StatusNotFound, "MANIFEST_UNKNOWN", "manifest unknown", "")
		return
	}
	w.Header().Set("Content-Type", m.mediaType)
	w.Header().Set("Docker-Content-Digest", d)
	w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
	if req.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(m.body)
}

// storagePath is where quay keeps a blob (storage/basestorage.py blob_path
// under the storage_path /datastorage/registry).
func storagePath(hex string) string {
	return path.Join("/datastorage/registry/sha256", hex[:2], hex)
}

// serveBlob is check_blob_exists (HEAD) and download_blob (GET: a 302 to
// the storage's direct download URL) of endpoints/v2/blob.py.
func (s *Server) serveBlob(w http.ResponseWriter, req *http.Request, digest, user string) {
	hex := strings.TrimPrefix(digest, "sha256:")
	fi, err := os.Stat(s.blobPath(hex))
	if err != nil {
		s.v2Error(w, http.StatusNotFound, "BLOB_UNKNOWN", "blob unknown to registry", "")
		return
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", digest)
	h.Set("Accept-Ranges", "bytes")
	if req.Method == http.MethodHead {
		h.Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Cache-Control", "max-age=31436000")
		return
	}
	h.Set("Cache-Control", "max-age=31536000")
	ns, name, _ := strings.Cut(s.opts.Repository, "/")
	target := s.signURL(storagePath(hex), url.Values{
		"username": {user}, "namespace": {ns}, "repo_name": {name}, "cdn_specific": {"False"},
	})
	// flask.redirect: 302 and werkzeug's HTML body.
	h.Set("Location", target)
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusFound)
	esc := html.EscapeString(target)
	_, _ = fmt.Fprintf(w, "<!doctype html>\n<html lang=en>\n<title>Redirecting...</title>\n<h1>Redirecting...</h1>\n<p>You should be redirected automatically to the target URL: <a href=\"%s\">%s</a>. If not, click the link.\n", esc, esc)
}
