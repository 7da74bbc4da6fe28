package server

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzAppendJSONString: whatever a client sends as path or User-Agent, the
// access line stays one line of valid JSON that reads back as what was sent
// (invalid UTF-8 as U+FFFD).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `quo"te`, `back\\slash`, "new\nline", "\x00\x1f\x7f", "é✓", "\xff\xfe", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		if strings.ContainsAny(string(b), "\n\r") {
			t.Fatalf("%q: line break in %q", s, b)
		}
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q: %q is not a JSON string: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && got != want {
			t.Fatalf("%q read back as %q", s, got)
		}
	})
}

func TestAccessLineIsJSON(t *testing.T) {
	e := &accessEntry{time: time.Date(2026, 11, 26, 5, 0, 0, 123, time.UTC), method: "GET", path: "/v2/a\"b", status: 200,
		size: 1 << 40, latency: 1500 * time.Microsecond, remoteIP: "::1", userAgent: "podman/5\x01", protocol: "HTTP/1.1",
		user: "alice", upstreamStatus: 304}
	b := appendAccessLine(nil, e)
	var line struct {
		Time        time.Time `json:"time"`
		Severity    string    `json:"severity"`
		Message     string    `json:"message"`
		HTTPRequest struct {
			RequestMethod string `json:"requestMethod"`
			RequestURL    string `json:"requestUrl"`
			Status        int    `json:"status"`
			ResponseSize  string `json:"responseSize"`
			Latency       string `json:"latency"`
			RemoteIP      string `json:"remoteIp"`
			UserAgent     string `json:"userAgent"`
			Protocol      string `json:"protocol"`
		} `json:"httpRequest"`
		User           string `json:"user"`
		UpstreamStatus int    `json:"upstream_status"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&line); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	h := line.HTTPRequest
	if !line.Time.Equal(e.time) || line.Severity != "INFO" || line.Message != "request" || h.RequestMethod != "GET" ||
		h.RequestURL != `/v2/a"b` || h.Status != 200 || h.ResponseSize != "1099511627776" || h.Latency != "0.001500s" ||
		h.RemoteIP != "::1" || h.UserAgent != "podman/5\x01" || h.Protocol != "HTTP/1.1" || line.User != "alice" || line.UpstreamStatus != 304 {
		t.Errorf("line = %s\nread back as %+v", b, line)
	}
	if b[len(b)-1] != '\n' || strings.Count(string(b), "\n") != 1 {
		t.Errorf("not exactly one line: %q", b)
	}
}

func BenchmarkAppendAccessLine(b *testing.B) {
	e := &accessEntry{time: time.Now(), method: "GET", path: "/v2/openshift/ci/manifests/ci_ci-operator_latest", status: 200,
		size: 1234, latency: time.Millisecond, remoteIP: "10.0.0.1", userAgent: "containers/5.0 (github.com/containers/image)",
		protocol: "HTTP/1.1", user: "robot", upstreamStatus: 200}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = appendAccessLine(buf[:0], e)
	}
}

func TestAccessLineNamesTheCluster(t *testing.T) {
	e := &accessEntry{time: time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC), method: "GET", path: "/v2/auth", status: 200,
		user: "system:serviceaccount:ci:builder", cluster: "build01"}
	got := string(appendAccessLine(nil, e))
	if !strings.Contains(got, `,"user":"system:serviceaccount:ci:builder","cluster":"build01","upstream_status":0}`) {
		t.Errorf("line %s does not name the cluster after the user", got)
	}
	e.cluster = ""
	if got := string(appendAccessLine(nil, e)); strings.Contains(got, "cluster") {
		t.Errorf("line %s names a cluster with a single one", got)
	}
}
