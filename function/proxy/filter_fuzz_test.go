package proxy

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/registry"
)

// FuzzForwardHeaders: whatever header names and values a client sends, the
// upstream request carries only allowlisted names, never a credential,
// cookie or routing header, with at most maxHeaderValues values each, and
// every allowlisted value it keeps is one the client sent.
func FuzzForwardHeaders(f *testing.F) {
	f.Add("Accept", "application/vnd.oci.image.manifest.v1+json", "X-HTTP-Method-Override", "DELETE", 3)
	f.Add("Range", "bytes=0-9", "Authorization", "Bearer ours", 1)
	f.Add("cookie", "a=b", "X-Original-URL", "/v2/_catalog", 40)
	f.Add("User-Agent", "", "Forwarded", "for=1.2.3.4", 0)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, repeat int) {
		in := http.Header{}
		repeat = min(max(repeat, 1), 100)
		for range repeat {
			in.Add(k1, v1)
			in[k2] = append(in[k2], v2) // also names Add would canonicalize
		}
		out := outHeader(in)
		for k, vs := range out {
			if !slices.Contains(forwardHeaders, k) {
				t.Fatalf("forwarded header %q not in the allowlist", k)
			}
			if len(vs) == 0 || len(vs) > maxHeaderValues {
				t.Fatalf("%s has %d values", k, len(vs))
			}
			for _, v := range vs {
				if !slices.Contains(in[k], v) {
					t.Fatalf("%s: value %q was never sent", k, v)
				}
			}
		}
		for _, k := range []string{"Authorization", "Cookie", "Proxy-Authorization", "X-Http-Method-Override", "X-Original-Url", "Forwarded", "X-Forwarded-For", "Host", "Connection"} {
			if _, ok := out[k]; ok {
				t.Fatalf("%s forwarded", k)
			}
		}
		// The client's header is not changed by building the upstream's.
		out["Accept"] = append(out["Accept"], "x")
		if n := len(in["Accept"]); n > 0 && in["Accept"][n-1] == "x" && !(k1 == "Accept" && v1 == "x") && !(k2 == "Accept" && v2 == "x") {
			t.Fatal("appending to the upstream header changed the client's")
		}
	})
}

// FuzzForwardQuery: the upstream query holds only the route's spec
// parameters, never access_token.
func FuzzForwardQuery(f *testing.F) {
	f.Add("n=100&last=abc&access_token=x", 0)
	f.Add("artifactType=a%2Fb&access_token=x;n=1", 1)
	f.Add("%zz&n=1", 2)
	f.Fuzz(func(t *testing.T, raw string, k int) {
		kinds := []registry.Kind{registry.KindTags, registry.KindReferrers, registry.KindManifest, registry.KindBlob}
		kind := kinds[((k%len(kinds))+len(kinds))%len(kinds)]
		got := outQuery(kind, &url.URL{RawQuery: raw})
		q, err := url.ParseQuery(got)
		if err != nil {
			t.Fatalf("forwarded query %q does not parse: %v", got, err)
		}
		for name := range q {
			if !slices.Contains(forwardQuery[kind], name) {
				t.Fatalf("kind %d: forwarded parameter %q", kind, name)
			}
		}
		if strings.Contains(got, "access_token") && !slices.Contains(forwardQuery[kind], "access_token") {
			// only possible inside an allowed parameter's value
			for _, vs := range q {
				for _, v := range vs {
					if strings.Contains(v, "access_token") {
						return
					}
				}
			}
			t.Fatalf("access_token forwarded: %q", got)
		}
	})
}

// FuzzRewriteLinks: a Link passed to the client names no host but ours.
func FuzzRewriteLinks(f *testing.F) {
	f.Add(`<https://quay.io/v2/openshift/ci/tags/list?n=100&last=abc>; rel="next"`)
	f.Add(`</v2/openshift/ci/tags/list?n=1>; rel="next", <https://evil.example/x>; rel="prev"`)
	f.Add(`<//evil.example/x>; rel="next"`)
	f.Add(`<https:evil>; a="<https://x>,"`)
	up, _ := url.Parse("https://quay.io")
	h := &Handler{opts: Options{Upstream: up}}
	fw := forwarded{scheme: "https", host: "registry.ci.example.com"}
	f.Fuzz(func(t *testing.T, v string) {
		out := h.rewriteLinks(v, fw)
		// Every kept link-value is "<ref>" and parameters, up to a comma
		// outside quotes.
		for rest := strings.TrimLeft(out, " "); rest != ""; rest = strings.TrimLeft(rest, " ") {
			if rest[0] != '<' {
				t.Fatalf("link-value does not start with < in %q", out)
			}
			end := strings.IndexByte(rest, '>')
			if end < 0 {
				t.Fatalf("unterminated link in %q", out)
			}
			ref := rest[1:end]
			rest = rest[end+1:]
			quoted := false
			i := 0
			for ; i < len(rest) && (quoted || rest[i] != ','); i++ {
				switch rest[i] {
				case '\\':
					i++
				case '"':
					quoted = !quoted
				}
			}
			rest = rest[min(i+1, len(rest)):]
			u, err := url.Parse(ref)
			if err != nil {
				t.Fatalf("kept an unparsable link %q from %q", ref, v)
			}
			if u.Host != "" && u.Host != fw.host {
				t.Fatalf("kept a link to %q from %q", u.Host, v)
			}
			if u.Host == "" && (u.Scheme != "" || u.Opaque != "") {
				t.Fatalf("kept a non-relative link %q from %q", ref, v)
			}
		}
	})
}
