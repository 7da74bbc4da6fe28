package quaytest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// keyPairID names the CDN signing key, as CloudFront's Key-Pair-Id does.
const keyPairID = "APKAQUAYTEST"

// cloudFrontEncoding is base64 with CloudFront's URL-safe replacements
// (+ to -, = to _, / to ~).
var cloudFrontEncoding = strings.NewReplacer("+", "-", "=", "_", "/", "~")

// signature signs resource (the URL without the signing parameters) until
// expires with key.
func signature(key []byte, resource string, expires int64) string {
	m := hmac.New(sha256.New, key)
	_, _ = io.WriteString(m, resource+"\n"+strconv.FormatInt(expires, 10))
	return cloudFrontEncoding.Replace(base64.StdEncoding.EncodeToString(m.Sum(nil)))
}

// signURL is CloudFrontedS3Storage.get_direct_download_url
// (storage/cloud.py): https://<cdn>/<path>?<kwargs>, then the canned-policy
// parameters Expires, Signature and Key-Pair-Id. The signature here is an
// HMAC rather than CloudFront's RSA: what matters to a client is that the
// URL is good only as it was given, and only until it expires.
func (s *Server) signURL(p string, kwargs url.Values) string {
	var q []string
	for _, k := range []string{"username", "namespace", "repo_name", "cdn_specific"} {
		q = append(q, url.QueryEscape(k)+"="+url.QueryEscape(kwargs.Get(k)))
	}
	resource := "https://" + s.CDNHost() + p + "?" + strings.Join(q, "&")
	s.mu.Lock()
	key := s.cdnKey
	s.mu.Unlock()
	expires := s.opts.Now().Add(s.opts.URLLifetime).Unix()
	return resource + "&Expires=" + strconv.FormatInt(expires, 10) +
		"&Signature=" + signature(key, resource, expires) + "&Key-Pair-Id=" + keyPairID
}

// signedQuery splits a raw query into what was signed and the signing parameters.
var signedQuery = regexp.MustCompile(`^(.*)&Expires=([0-9]+)&Signature=([A-Za-z0-9~_-]+)&Key-Pair-Id=([A-Za-z0-9]+)$`)

// blobStoragePath matches storagePath's result.
var blobStoragePath = regexp.MustCompile(`^/datastorage/registry/sha256/([0-9a-f]{2})/([0-9a-f]{64})$`)

func (s *Server) cdnDenied(w http.ResponseWriter, message string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>`+message+`</Message></Error>`)
}

// handleCDN serves a blob's bytes (with Range, as CloudFront does) only for
// a URL signed by signURL that has not expired.
func (s *Server) handleCDN(w http.ResponseWriter, req *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		s.mu.Lock()
		s.cdnRequests = append(s.cdnRequests, record(req, rec))
		s.mu.Unlock()
	}()
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		s.cdnDenied(rec, "Method not allowed")
		return
	}
	m := signedQuery.FindStringSubmatch(req.URL.RawQuery)
	if m == nil {
		s.cdnDenied(rec, "Missing Key-Pair-Id query parameter or cookie value")
		return
	}
	expires, err := strconv.ParseInt(m[2], 10, 64)
	s.mu.Lock()
	key := s.cdnKey
	s.mu.Unlock()
	resource := "https://" + s.CDNHost() + req.URL.EscapedPath() + "?" + m[1]
	if err != nil || m[4] != keyPairID || !hmac.Equal([]byte(m[3]), []byte(signature(key, resource, expires))) {
		s.cdnDenied(rec, "Access denied")
		return
	}
	if !s.opts.Now().Before(time.Unix(expires, 0)) {
		s.cdnDenied(rec, "Request has expired")
		return
	}
	p := blobStoragePath.FindStringSubmatch(req.URL.EscapedPath())
	if p == nil || p[1] != p[2][:2] {
		s.cdnDenied(rec, "Access denied")
		return
	}
	f, err := os.Open(s.blobPath(p[2]))
	if err != nil {
		rec.WriteHeader(http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		rec.WriteHeader(http.StatusInternalServerError)
		return
	}
	rec.Header().Set("Content-Type", "application/octet-stream")
	rec.Header().Set("ETag", `"`+p[2][:32]+`"`)
	http.ServeContent(rec, req, path.Base(p[2]), fi.ModTime(), f)
}
