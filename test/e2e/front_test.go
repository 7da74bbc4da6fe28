package e2e

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/qci-appci/qci-appci/test/quaytest"
)

// tlsFront is the platform's front end as Cloud Run's and a Knative
// ingress are: TLS to clients with a certificate of a CA of its own, h2c to
// the function, X-Forwarded-Proto https, the client's Host kept.
type tlsFront struct {
	Host    string // 127.0.0.1:PORT
	CertDir string // a containers/image cert dir holding the front's CA as ca.crt
}

func startTLSFront(t *testing.T, function string) *tlsFront {
	t.Helper()
	dir := t.TempDir()
	ca, err := quaytest.NewCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	certDir := filepath.Join(dir, "certs.d")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certDir, "ca.crt"), ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := ca.ServerCertificate()
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(function)
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	t.Cleanup(tr.CloseIdleConnections)
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host
			r.SetXForwarded()
		},
		Transport:     tr,
		FlushInterval: -1,
	}
	srv := httptest.NewUnstartedServer(rp)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &tlsFront{Host: srv.Listener.Addr().String(), CertDir: certDir}
}
