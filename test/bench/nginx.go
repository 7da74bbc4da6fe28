package main

import (
	"encoding/base64"
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

// upstreamPorts are the upstream nginx's three servers, all on one root:
// TLS for the throughput rows (no access log), TLS with an access log for
// the pull rows (every request the upstream is asked counted), and plain
// HTTP for the secondary table.
type upstreamPorts struct{ tls, pull, plain int }

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
	locations := func(scheme, log string) string {
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
    }
    location /v2/%[5]s/blobs/ {
      if ($http_authorization != "Bearer %[4]s") { return 401; }
      default_type application/octet-stream;
      add_header Docker-Content-Digest $uri_digest;
    }`, dir, scheme, basic, upstreamTok, repo, log, manifestType)
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
  map_hash_bucket_size 256;
  log_format uri '$request_method $request_uri $status';
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
  }
  server {
    listen 127.0.0.1:%[3]d ssl;%[6]s%[7]s
  }
  server {
    listen 127.0.0.1:%[4]d ssl;%[6]s%[8]s
  }
  server {
    listen 127.0.0.1:%[5]d;%[9]s
  }
}
`, dir, digests.String(), p.tls, p.pull, p.plain, tlsConf,
		locations("https", ""),
		locations("https", "access_log "+dir+"/upstream/pull.log uri;"),
		locations("http", ""))
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
