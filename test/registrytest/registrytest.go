// Package registrytest runs a real upstream registry in process, standing in
// for quay.io in tests and in the demo: a distribution/v3 registry (inmemory
// storage, token auth) and, on the same port, a token server that issues
// distribution-format JWTs to one robot account, signed ES256 with an x5c
// certificate the registry trusts. Everything it receives is recorded, so
// tests can assert what the upstream saw. It does not import testing.
package registrytest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/factory"
	"github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/golang-jwt/jwt/v5"
	"github.com/sirupsen/logrus"

	// The token access controller registers itself.
	_ "github.com/distribution/distribution/v3/registry/auth/token"
)

// driverName is the storage driver that hands the registry the Registry's own
// inmemory driver, so that content survives Restart.
const driverName = "registrytest"

type sharedDriver struct{}

func (sharedDriver) Create(_ context.Context, params map[string]any) (storagedriver.StorageDriver, error) {
	d, ok := params["driver"].(storagedriver.StorageDriver)
	if !ok {
		return nil, errors.New("registrytest: no driver parameter")
	}
	return d, nil
}

func init() {
	// Distribution finds storage drivers by name only; registering ours is
	// the one way to hand an App an existing driver.
	factory.Register(driverName, sharedDriver{})
}

// Service is the service name in the registry's challenge and tokens' aud.
const Service = "registrytest"

// Issuer is the iss of the tokens.
const Issuer = "registrytest-token-server"

// Options configure a Registry.
type Options struct {
	// Repository is the served private repository; default openshift/ci.
	Repository string
	// Username and Password are the robot's; default robot / robot-secret.
	Username, Password string
	// TokenTTL is the lifetime of issued tokens (expires_in); default 5m.
	TokenTTL time.Duration
	// Addr is the listen address; default 127.0.0.1:0.
	Addr string
}

// Request is one request the registry or its token server received.
type Request struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Status                 int
	// RemoteAddr is the client's end of the connection it came on: the
	// same for requests on one kept-alive connection.
	RemoteAddr string
}

// Registry is a running upstream registry.
type Registry struct {
	opts   Options
	addr   string // 127.0.0.1:PORT, kept across Stop/Resume
	port   string
	dir    string
	driver storagedriver.StorageDriver

	mu       sync.Mutex
	password string
	key      *ecdsa.PrivateKey
	certDER  []byte
	app      http.Handler
	srv      *http.Server
	requests []Request
	fetches  int
	conns    []string
}

// Start starts a registry and returns when it accepts connections.
func Start(opts Options) (*Registry, error) {
	if opts.Repository == "" {
		opts.Repository = "openshift/ci"
	}
	if opts.Username == "" {
		opts.Username, opts.Password = "robot", "robot-secret"
	}
	if opts.TokenTTL == 0 {
		opts.TokenTTL = 5 * time.Minute
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	logrus.SetLevel(logrus.FatalLevel) // distribution logs every request, and every 404 as an error
	dir, err := os.MkdirTemp("", "registrytest-")
	if err != nil {
		return nil, fmt.Errorf("registrytest: %w", err)
	}
	r := &Registry{opts: opts, dir: dir, driver: inmemory.New(), password: opts.Password}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("registrytest: listen: %w", err)
	}
	r.addr = ln.Addr().String()
	_, r.port, _ = net.SplitHostPort(r.addr)
	if err := r.newApp(); err != nil {
		_ = ln.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	r.serve(ln)
	return r, nil
}

// URL is the registry's base URL, on the host name localhost.
func (r *Registry) URL() string { return "http://localhost:" + r.port }

// Host is localhost:PORT, for image references.
func (r *Registry) Host() string { return "localhost:" + r.port }

// Realm is the token endpoint the registry's challenge names.
func (r *Registry) Realm() string { return r.URL() + "/token" }

// Close stops the registry and removes its files.
func (r *Registry) Close() error {
	err := r.Stop()
	_ = os.RemoveAll(r.dir)
	return err
}

// Stop stops listening and drops open connections; content and port stay.
func (r *Registry) Stop() error {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("registrytest: stop: %w", err)
	}
	return nil
}

// Resume listens again on the same port with the same content.
func (r *Registry) Resume() error {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		return fmt.Errorf("registrytest: resume: %w", err)
	}
	r.serve(ln)
	return nil
}

// Restart simulates an upstream restart with a new token signing key: same
// port and content, and every token issued before is refused with 401.
func (r *Registry) Restart() error {
	if err := r.Stop(); err != nil {
		return err
	}
	if err := r.newApp(); err != nil {
		return err
	}
	return r.Resume()
}

// SetPassword changes the robot's password, as when it is rotated upstream.
func (r *Registry) SetPassword(p string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.password = p
}

// Requests returns everything received so far, in order.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.requests))
	copy(out, r.requests)
	return out
}

// ResetRequests forgets the requests received so far.
func (r *Registry) ResetRequests() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

// TokenFetches is the number of tokens issued.
func (r *Registry) TokenFetches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fetches
}

// Connections are the client addresses (Request.RemoteAddr) of the TCP
// connections accepted so far, in order: a client that keeps its
// connections alive opens one for many requests.
func (r *Registry) Connections() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.conns...)
}

// newApp makes a signing key and certificate and a registry App that trusts
// only that certificate.
func (r *Registry) newApp() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("registrytest: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: Issuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("registrytest: certificate: %w", err)
	}
	bundle := filepath.Join(r.dir, "root-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("registrytest: %w", err)
	}
	cfg := &configuration.Configuration{
		Version: "0.1",
		Storage: configuration.Storage{
			driverName:    configuration.Parameters{"driver": r.driver},
			"delete":      configuration.Parameters{"enabled": true},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
		Auth: configuration.Auth{"token": configuration.Parameters{
			"realm":          r.Realm(),
			"service":        Service,
			"issuer":         Issuer,
			"rootcertbundle": bundle,
		}},
	}
	cfg.HTTP.Secret = "registrytest-http-secret"
	cfg.Log.AccessLog.Disabled = true
	cfg.Log.Level = "error"
	app := handlers.NewApp(context.Background(), cfg)
	r.mu.Lock()
	r.key, r.certDER, r.app = key, der, app
	r.mu.Unlock()
	return nil
}

func (r *Registry) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, state http.ConnState) {
			if state == http.StateNew {
				r.mu.Lock()
				r.conns = append(r.conns, c.RemoteAddr().String())
				r.mu.Unlock()
			}
		}}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (r *Registry) handle(w http.ResponseWriter, req *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		r.mu.Lock()
		r.requests = append(r.requests, Request{Method: req.Method, Path: req.URL.Path, RawQuery: req.URL.RawQuery,
			Header: req.Header.Clone(), Status: rec.status, RemoteAddr: req.RemoteAddr})
		r.mu.Unlock()
	}()
	if req.URL.Path == "/token" {
		r.token(rec, req)
		return
	}
	r.mu.Lock()
	app := r.app
	r.mu.Unlock()
	app.ServeHTTP(rec, req)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// ReadFrom keeps the registry's blob copies on the kernel's fast path.
func (s *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	if rf, ok := s.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{s.ResponseWriter}, src)
}

// access is one entry of a distribution token's access claim.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// token issues a token to the robot, as docker's token auth does.
func (r *Registry) token(w http.ResponseWriter, req *http.Request) {
	user, pass, ok := req.BasicAuth()
	r.mu.Lock()
	password, key, der := r.password, r.key, r.certDER
	r.mu.Unlock()
	if !ok || user != r.opts.Username || pass != password {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"invalid username or password"}]}`)
		return
	}
	var grants []access
	for _, s := range req.URL.Query()["scope"] {
		for _, one := range strings.Fields(s) {
			parts := strings.Split(one, ":")
			if len(parts) != 3 || parts[0] != "repository" || parts[1] != r.opts.Repository {
				continue
			}
			var actions []string
			for _, a := range strings.Split(parts[2], ",") {
				if a == "pull" || a == "push" || a == "delete" {
					actions = append(actions, a)
				}
			}
			grants = append(grants, access{Type: "repository", Name: parts[1], Actions: actions})
		}
	}
	now := time.Now()
	var jti [8]byte
	_, _ = rand.Read(jti[:])
	claims := jwt.MapClaims{
		"iss": Issuer, "sub": user, "aud": Service,
		"exp": now.Add(r.opts.TokenTTL).Unix(), "nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(),
		"jti": hex.EncodeToString(jti[:]), "access": grants,
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	t.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(der)}
	signed, err := t.SignedString(key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	r.mu.Lock()
	r.fetches++
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token": signed, "access_token": signed,
		"expires_in": int(r.opts.TokenTTL / time.Second), "issued_at": now.UTC().Format(time.RFC3339),
	})
}
