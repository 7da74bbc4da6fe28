// Package quaytest runs an in-process upstream registry that behaves as
// quay.io does, as quay's own source (quay/quay endpoints/v2, auth,
// storage) shows it: https with a CA of its own; a token realm /v2/auth on
// its own host that answers Basic robot credentials with {"token": JWT}
// (RS256, an exp an hour out, no expires_in); /v2/ answering 401 "true"
// with quay's Bearer challenge; tag lists ordered by name and paged at 100
// with n and last and quay's Link header; manifests and indexes by tag and
// digest; blob GETs answered 302 to a pre-signed URL on a second https
// server (the CDN, on another host name) that serves the bytes only with a valid
// signature and expiry; quay's error bodies; 429 with Retry-After on
// demand. Everything either server receives is recorded. It does not
// import testing.
package quaytest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// Repository is the served private repository; default openshift/ci.
	Repository string
	// Username and Password are the robot's; default openshift+robot / robot-token.
	Username, Password string
	// CA signs the servers' certificates; default a new one in the
	// server's own directory. Share one CA between servers when a process
	// trusts it once through SSL_CERT_FILE.
	CA *CA
	// TokenLifetime is the lifetime of issued tokens (their exp); default
	// quay's TOKEN_VALIDITY_LIFETIME_S, an hour.
	TokenLifetime time.Duration
	// PageSize is the largest tag list page; default and minimum 100, as
	// quay's _MAX_RESULTS_PER_PAGE.
	PageSize int
	// URLLifetime is how long a pre-signed CDN URL is good; default 60 s,
	// quay's get_direct_download_url expires_in.
	URLLifetime time.Duration
	// Now is the clock of token and URL expiry; default time.Now.
	Now func() time.Time
}

// Request is one request the registry or the CDN received, and the
// status and headers of its answer.
type Request struct {
	Method, Host, Path, RawQuery string
	Header                       http.Header
	Status                       int
	Answer                       http.Header
}

// Server is a running quay-like registry and its CDN.
type Server struct {
	opts Options
	dir  string
	ca   *CA
	cert tls.Certificate

	regAddr, cdnAddr string // kept across Stop/Resume

	mu            sync.Mutex
	key           *rsa.PrivateKey
	kid           string
	cdnKey        []byte
	reg, cdn      *http.Server
	manifests     map[string]manifest
	tags          map[string]string
	requests      []Request
	cdnRequests   []Request
	fetches       int
	limited       int
	retryAfter    time.Duration
	absoluteLinks bool
	cookie        *http.Cookie
	realmHost     string
}

// Start starts the registry on 127.0.0.1 and the CDN on localhost, both
// https, and returns when both accept connections. The registry is named
// by its IP literal and the CDN by a name because go-containerregistry
// refuses to follow a redirect to an IP literal in private or loopback
// space from another host (its SSRF guard), and localhost is the one name
// every machine resolves to loopback: a CDN named localhost:PORT is
// another host, by name, than the registry at 127.0.0.1:PORT.
func Start(opts Options) (*Server, error) {
	if opts.Repository == "" {
		opts.Repository = "openshift/ci"
	}
	if opts.Username == "" {
		opts.Username, opts.Password = "openshift+robot", "robot-token"
	}
	if opts.TokenLifetime == 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.PageSize < 100 {
		opts.PageSize = 100
	}
	if opts.URLLifetime == 0 {
		opts.URLLifetime = 60 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dir, err := os.MkdirTemp("", "quaytest-")
	if err != nil {
		return nil, fmt.Errorf("quaytest: %w", err)
	}
	s := &Server{opts: opts, dir: dir, ca: opts.CA, manifests: map[string]manifest{}, tags: map[string]string{}}
	fail := func(err error) (*Server, error) {
		_ = s.Close()
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "blobs"), 0o700); err != nil {
		return fail(fmt.Errorf("quaytest: %w", err))
	}
	if s.ca == nil {
		if s.ca, err = NewCA(dir); err != nil {
			return fail(err)
		}
	}
	if s.cert, err = s.ca.leaf(); err != nil {
		return fail(err)
	}
	if err := s.newKeys(); err != nil {
		return fail(err)
	}
	regLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("quaytest: listen: %w", err))
	}
	cdnLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = regLn.Close()
		return fail(fmt.Errorf("quaytest: listen: %w", err))
	}
	s.regAddr, s.cdnAddr = regLn.Addr().String(), cdnLn.Addr().String()
	s.serve(regLn, cdnLn)
	return s, nil
}

// Host is 127.0.0.1:PORT, the registry's SERVER_HOSTNAME: the service of
// its challenge and the aud of its tokens.
func (s *Server) Host() string { return s.regAddr }

// URL is the registry's base URL, https://127.0.0.1:PORT.
func (s *Server) URL() string { return "https://" + s.Host() }

// Realm is the token endpoint the registry's challenge names: its own
// /v2/auth, on the host SetRealmHost set if any.
func (s *Server) Realm() string {
	s.mu.Lock()
	host := s.realmHost
	s.mu.Unlock()
	if host == "" {
		host = s.Host()
	}
	return "https://" + host + "/v2/auth"
}

// SetRealmHost makes the challenge name the realm on host ("" for the
// registry's own), as a registry whose token service lives elsewhere does.
// The token endpoint answers on every name of the server.
func (s *Server) SetRealmHost(host string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.realmHost = host
}

// CDNHost is the CDN's host, localhost:PORT.
func (s *Server) CDNHost() string {
	_, port, _ := net.SplitHostPort(s.cdnAddr)
	return "localhost:" + port
}

// CA is the CA that signed both servers' certificates.
func (s *Server) CA() *CA { return s.ca }

// Repository is the served repository.
func (s *Server) Repository() string { return s.opts.Repository }

// Close stops both servers and removes the stored content.
func (s *Server) Close() error {
	err := s.Stop()
	_ = os.RemoveAll(s.dir)
	return err
}

// Stop stops both servers and drops open connections; content and ports stay.
func (s *Server) Stop() error {
	s.mu.Lock()
	reg, cdn := s.reg, s.cdn
	s.reg, s.cdn = nil, nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range []*http.Server{reg, cdn} {
		if srv != nil {
			errs = append(errs, srv.Close())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("quaytest: stop: %w", err)
	}
	return nil
}

// Resume listens again on the same ports with the same content and keys.
func (s *Server) Resume() error {
	regLn, err := net.Listen("tcp", s.regAddr)
	if err != nil {
		return fmt.Errorf("quaytest: resume: %w", err)
	}
	cdnLn, err := net.Listen("tcp", s.cdnAddr)
	if err != nil {
		_ = regLn.Close()
		return fmt.Errorf("quaytest: resume: %w", err)
	}
	s.serve(regLn, cdnLn)
	return nil
}

// Restart simulates an upstream restart with new instance keys: same ports
// and content, and every token and CDN URL issued before is refused.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	if err := s.newKeys(); err != nil {
		return err
	}
	return s.Resume()
}

func (s *Server) newKeys() error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("quaytest: token key: %w", err)
	}
	cdnKey := make([]byte, 32)
	_, _ = rand.Read(cdnKey)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key, s.cdnKey = key, cdnKey
	s.kid = "quaytest-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	return nil
}

func (s *Server) serve(regLn, cdnLn net.Listener) {
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{s.cert}, MinVersion: tls.VersionTLS12}
	reg := &http.Server{Handler: http.HandlerFunc(s.handleRegistry), TLSConfig: tlsCfg.Clone(), ReadHeaderTimeout: 10 * time.Second}
	cdn := &http.Server{Handler: http.HandlerFunc(s.handleCDN), TLSConfig: tlsCfg.Clone(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.reg, s.cdn = reg, cdn
	s.mu.Unlock()
	go func() { _ = reg.ServeTLS(regLn, "", "") }()
	go func() { _ = cdn.ServeTLS(cdnLn, "", "") }()
}

// Requests returns everything the registry received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// CDNRequests returns everything the CDN received so far, in order.
func (s *Server) CDNRequests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.cdnRequests...)
}

// ResetRequests forgets what both servers received so far.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests, s.cdnRequests = nil, nil
}

// TokenFetches is the number of tokens issued.
func (s *Server) TokenFetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// RateLimit answers the next n registry requests 429 with Retry-After
// (whole seconds), as quay.io's rate limiting front does.
func (s *Server) RateLimit(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limited, s.retryAfter = n, retryAfter
}

// SetAbsoluteLinks makes the tag list's Link name the registry's absolute
// URL (https://127.0.0.1:PORT/v2/…), as quay.io did before it built the
// Link from url_for alone; off, the Link is the path quay builds today.
func (s *Server) SetAbsoluteLinks(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.absoluteLinks = on
}

// SetCookie adds c to every registry answer (nil: none), as a session
// cookie or a load balancer's affinity cookie in front of a registry is.
func (s *Server) SetCookie(c *http.Cookie) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cookie = c
}
