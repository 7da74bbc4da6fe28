package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// upstreamPorts are the upstream nginx's servers, all on one root: TLS
// for the throughput rows (no access log), TLS with an access log for the
// pull rows (every request the upstream is asked counted), plain HTTP for
// the secondary table, and quay.io's shape for the redirected pull rows:
// a TLS registry (redirect) whose blob GETs are 302s to pre-signed URLs on
// a TLS CDN of another name (cdn), each with an access log of its own.
type upstreamPorts struct{ tls, pull, plain, redirect, cdn int }

// upstreamConf is the upstream: nginx with sendfile and HTTP/1.1
// keep-alive, a token endpoint at /v2/auth on its own host (as quay.io's
// realm is), a Bearer challenge on /v2/, and manifests and blobs that need
// the token it hands out.
func upstreamConf(dir string, p upstreamPorts, ca *benchCA, c *content) string {
	var digests strings.Builder
	keys := make([]string, 0, len(c.digests))
	for k := range c.digests {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&digests, "    %s %s;\n", k, c.digests[k])
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(robotUser+":"+robotPass))
	blobs := fmt.Sprintf(`
    location /v2/%[1]s/blobs/ {
      if ($http_authorization != "Bearer %[2]s") { return 401; }
      default_type application/octet-stream;
      add_header Docker-Content-Digest $uri_digest;
    }`, repo, upstreamTok)
	locations := func(scheme, log, blobs string) string {
		return fmt.Sprintf(`
    root %[1]s/www;
    %[6]s
    location = /v2/ {
      add_header WWW-Authenticate 'Bearer realm="%[2]s://$http_host/v2/auth",service="bench"' always;
      return 401 '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}';
    }
    location = /v2/auth {
      access_log %[1]s/upstream/token.log uri;
      %[6]s
      if ($http_authorization != "%[3]s") { return 401; }
      default_type application/json;
      return 200 '{"token":"%[4]s","expires_in":3600}';
    }
    location /v2/%[5]s/manifests/ {
      if ($http_authorization != "Bearer %[4]s") { return 401; }
      default_type %[7]s;
      add_header Docker-Content-Digest $manifest_digest;
    }%[8]s`, dir, scheme, basic, upstreamTok, repo, log, manifestType, blobs)
	}
	tlsConf := fmt.Sprintf(`
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:bench:1m;`, ca.CertFile, ca.KeyFile)
	return fmt.Sprintf(`
worker_processes 2;
pid %[1]s/upstream/nginx.pid;
error_log %[1]s/upstream/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  map_hash_bucket_size 512;
  log_format uri '$request_method $request_uri $status';
  log_format bytes '$request_method $request_uri $status $body_bytes_sent';
  log_format cdn '$request_method $uri $status $body_bytes_sent';
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path %[1]s/upstream;
  proxy_temp_path %[1]s/upstream;
  fastcgi_temp_path %[1]s/upstream;
  uwsgi_temp_path %[1]s/upstream;
  scgi_temp_path %[1]s/upstream;
  map $uri $manifest_digest {
%[2]s  }
  map $uri $uri_digest {
    "~/(sha256:[0-9a-f]{64})$" $1;
  }%[10]s
  server {
    listen 127.0.0.1:%[3]d ssl;%[6]s%[7]s
  }
  server {
    listen 127.0.0.1:%[4]d ssl;%[6]s%[8]s
  }
  server {
    listen 127.0.0.1:%[5]d;%[9]s
  }%[11]s
}
`, dir, digests.String(), p.tls, p.pull, p.plain, tlsConf,
		locations("https", "", blobs),
		locations("https", "access_log "+dir+"/upstream/pull.log uri;", blobs),
		locations("http", "", blobs),
		cdnMaps(p, c), redirectServers(dir, p, tlsConf, locations))
}

// cdnHost is the CDN's name, in the upstream's certificate beside
// upstreamHost. It must be a name, not an IP literal:
// go-containerregistry's checkRedirectSSRF refuses a redirect from a host
// to a private or loopback IP literal.
const cdnHost = "cdn.bench.test"

// signedBlobURL is the pre-signed URL the redirecting upstream sends a blob
// GET of digest to, in the shape of S3's query-string authentication (what
// quay's S3 storage get_direct_download_url hands out, a boto
// generate_presigned_url with ExpiresIn 600): the path quay's storage
// gives the blob (storage/basestorage.py: datastorage/registry/sha256/<2
// hex>/<hex>) and X-Amz-* parameters whose signature is an HMAC of that
// path under a key of the run. The CDN serves exactly these URLs.
func signedBlobURL(key []byte, digest string) (path, query string) {
	hexd := strings.TrimPrefix(digest, "sha256:")
	path = "/datastorage/registry/sha256/" + hexd[:2] + "/" + hexd
	m := hmac.New(sha256.New, key)
	m.Write([]byte(path))
	query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIABENCHCDN%2F20261201%2Fus-east-1%2Fs3%2Faws4_request" +
		"&X-Amz-Date=20261201T000000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host&X-Amz-Signature=" + hex.EncodeToString(m.Sum(nil))
	return path, query
}

// cdnMaps are the redirecting upstream's map from a blob path to its
// pre-signed URL, and the CDN's set of the URLs it signed.
func cdnMaps(p upstreamPorts, c *content) string {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	var loc, signed strings.Builder
	for _, d := range append([]string{c.blob}, c.pullBlobs...) {
		path, query := signedBlobURL(key, d)
		fmt.Fprintf(&loc, "    \"/v2/%s/blobs/%s\" \"https://%s:%d%s?%s\";\n", repo, d, cdnHost, p.cdn, path, query)
		fmt.Fprintf(&signed, "    \"%s?%s\" 1;\n", path, query)
	}
	return fmt.Sprintf(`
  map $uri $signed_blob_url {
    default "";
%s  }
  map $request_uri $cdn_signed {
    default 0;
%s  }`, loc.String(), signed.String())
}

// redirectServers are quay.io's shape: the registry on p.redirect (the
// same /v2/, token realm and manifests as the pull port, with its own
// access log) answering each blob GET that carries the upstream token with
// a 302 to its pre-signed URL, and the CDN on p.cdn serving the blob files
// only at those URLs and to no request that carries an Authorization
// header: S3 refuses a pre-signed request that also has one ("Only one
// auth mechanism allowed"), and quay's CDN never sees registry credentials,
// ours or the upstream's. Their logs give each request's status and the
// body bytes sent.
func redirectServers(dir string, p upstreamPorts, tlsConf string, locations func(scheme, log, blobs string) string) string {
	redirect := fmt.Sprintf(`
    location /v2/%[1]s/blobs/ {
      if ($http_authorization != "Bearer %[2]s") { return 401; }
      default_type application/json;
      if ($signed_blob_url = "") {
        return 404 '{"errors":[{"code":"BLOB_UNKNOWN","detail":{},"message":"blob unknown to registry"}]}';
      }
      return 302 $signed_blob_url;
    }`, repo, upstreamTok)
	return fmt.Sprintf(`
  server {
    listen 127.0.0.1:%[1]d ssl;%[3]s%[4]s
  }
  server {
    listen 127.0.0.1:%[2]d ssl;%[3]s
    access_log %[5]s/upstream/cdn.log cdn;
    error_page 400 @invalid;
    error_page 403 @denied;
    location ~ "^/datastorage/registry/sha256/[0-9a-f]{2}/(?<blob_hex>[0-9a-f]{64})$" {
      if ($http_authorization) { return 400; }
      if ($cdn_signed = 0) { return 403; }
      default_type application/octet-stream;
      alias %[5]s/www/v2/%[6]s/blobs/sha256:$blob_hex;
    }
    location / { return 403; }
    location @invalid {
      default_type application/xml;
      return 400 '<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>';
    }
    location @denied {
      default_type application/xml;
      return 403 '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>';
    }
  }`, p.redirect, p.cdn, tlsConf,
		locations("https", "access_log "+dir+"/upstream/redirect.log bytes;", redirect), dir, repo)
}

// proxyPorts are nginx-as-proxy's servers: h2c (HTTP/2 with prior
// knowledge, as queue-proxy speaks) and HTTP/1.1 in front of the TLS
// upstream, and HTTP/1.1 in front of the plain-HTTP one.
type proxyPorts struct{ h2c, h1, plain int }

// proxyConf is what an operator might run instead of qci-appci: nginx
// replacing the client's Authorization with the upstream token, unbuffered,
// over kept-alive (and, to TLS, session-resumed) upstream connections that
// verify the upstream's certificate.
func proxyConf(dir string, p proxyPorts, up upstreamPorts, ca *benchCA) string {
	location := func(scheme, name string, port int) string {
		s := fmt.Sprintf(`
    location / {
      proxy_pass %s://%s;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host localhost:%d;
      proxy_set_header Authorization "Bearer %s";
      proxy_buffering off;`, scheme, name, port, upstreamTok)
		if scheme == "https" {
			s += fmt.Sprintf(`
      proxy_ssl_server_name on;
      proxy_ssl_name localhost;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate %s;
      proxy_ssl_session_reuse on;`, ca.CAFile)
		}
		return s + "\n    }"
	}
	return fmt.Sprintf(`
worker_processes 2;
pid %[1]s/proxy/nginx.pid;
error_log %[1]s/proxy/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  http2_max_concurrent_streams 256;
  client_body_temp_path %[1]s/proxy;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/proxy;
  uwsgi_temp_path %[1]s/proxy;
  scgi_temp_path %[1]s/proxy;
  upstream tls {
    server 127.0.0.1:%[5]d;
    keepalive 128;
  }
  upstream plain {
    server 127.0.0.1:%[6]d;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:%[2]d http2;%[7]s
  }
  server {
    listen 127.0.0.1:%[3]d;%[7]s
  }
  server {
    listen 127.0.0.1:%[4]d;%[8]s
  }
}
`, dir, p.h2c, p.h1, p.plain, up.tls, up.plain, location("https", "tls", up.tls), location("http", "plain", up.plain))
}

type nginxProc struct {
	cmd *exec.Cmd
}

// startNginx runs nginx in the foreground on conf and waits until it
// listens on every port.
func startNginx(bin, dir, name, conf string, ports ...int) (*nginxProc, error) {
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-e", filepath.Join(dir, name, "error.log"), "-p", filepath.Join(dir, name), "-c", path, "-g", "daemon off;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &nginxProc{cmd: cmd}
	for _, p := range ports {
		if err := waitTCP("127.0.0.1:" + strconv.Itoa(p)); err != nil {
			n.stop()
			return nil, fmt.Errorf("nginx %s: %w", name, err)
		}
	}
	return n, nil
}

// pids are the nginx master and workers.
func (n *nginxProc) pids() []int {
	pids := []int{n.cmd.Process.Pid}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.cmd.Process.Pid, n.cmd.Process.Pid))
	if err == nil {
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// stop asks nginx to stop with SIGTERM, on which the master ends its
// workers; SIGKILL would leave the workers running, holding the port.
func (n *nginxProc) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
}
