package main

import (
	"crypto/tls"
	"fmt"

	"github.com/qci-appci/qci-appci/test/quaytest"
)

// upstreamHost is the name the bench's own clients reach the TLS upstream
// by. go-containerregistry speaks plain HTTP to any "localhost:" registry,
// so its direct pull needs a name of another shape; the bench's clients
// dial it on loopback (see dialLoopback). The function reaches the same
// nginx as https://localhost:PORT, as its certificate also names.
const upstreamHost = "upstream.bench.test"

// benchCA is a certificate authority of the bench's own (quaytest's) and
// the upstream's certificate it signed, written as PEM files for nginx
// (cert, key) and for the function process (SSL_CERT_FILE=CAFile).
type benchCA struct {
	CAFile, CertFile, KeyFile string
	ca                        *quaytest.CA
}

func newBenchCA(dir string) (*benchCA, error) {
	ca, err := quaytest.NewCA(dir)
	if err != nil {
		return nil, err
	}
	cert, key, err := ca.WriteServerFiles(dir, "upstream", upstreamHost, cdnHost)
	if err != nil {
		return nil, fmt.Errorf("upstream certificate: %w", err)
	}
	return &benchCA{CAFile: ca.File(), CertFile: cert, KeyFile: key, ca: ca}, nil
}

func (ca *benchCA) clientConfig() *tls.Config {
	return &tls.Config{RootCAs: ca.ca.Pool(), MinVersion: tls.VersionTLS12}
}
