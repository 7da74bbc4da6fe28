package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var testNow = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// saToken is a JWT shaped like a kubelet's service account token, expiring
// at exp. The signature is never checked here.
func saToken(t *testing.T, exp time.Time) string {
	t.Helper()
	claims := jwt.MapClaims{
		"iss": "https://kubernetes.default.svc", "sub": "system:serviceaccount:ci:builder",
		"aud": []string{"https://registry.ci.example.com"}, "iat": testNow.Unix(),
	}
	if !exp.IsZero() {
		claims["exp"] = exp.Unix()
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("not-the-cluster-key-0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(apiVersion, kind, token string) string {
	s := `{"apiVersion":"` + apiVersion + `","kind":"` + kind + `","image":"registry.ci.example.com/openshift/ci:ci_ci-operator_latest"`
	if token != "" {
		s += `,"serviceAccountToken":"` + token + `","serviceAccountAnnotations":{"example.com/team":"ci"}`
	}
	return s + "}\n"
}

func response(token, cacheDuration string) string {
	return `{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1",` +
		`"cacheKeyType":"Registry","cacheDuration":"` + cacheDuration + `",` +
		`"auth":{"registry.ci.example.com":{"username":"serviceaccount","password":"` + token + `"}}}` + "\n"
}

func Test_runPlugin(t *testing.T) {
	const v1 = "credentialprovider.kubelet.k8s.io/v1"
	hour := saToken(t, testNow.Add(time.Hour))
	odd := saToken(t, testNow.Add(10*time.Minute+3*time.Second))
	expired := saToken(t, testNow.Add(-time.Second))
	noExp := saToken(t, time.Time{})
	cases := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{"token valid for an hour: cached for half of it", request(v1, "CredentialProviderRequest", hour), response(hour, "30m0s"), ""},
		{"half of the rest, in whole seconds", request(v1, "CredentialProviderRequest", odd), response(odd, "5m1s"), ""},
		{"expired token: not cached", request(v1, "CredentialProviderRequest", expired), response(expired, "0s"), ""},
		{"token without exp: not cached", request(v1, "CredentialProviderRequest", noExp), response(noExp, "0s"), ""},
		{"opaque token: not cached", request(v1, "CredentialProviderRequest", "sha256~opaque"), response("sha256~opaque", "0s"), ""},
		{"no token", request(v1, "CredentialProviderRequest", ""), "", "holds no serviceAccountToken"},
		{"older apiVersion", request("credentialprovider.kubelet.k8s.io/v1beta1", "CredentialProviderRequest", hour), "",
			`apiVersion "credentialprovider.kubelet.k8s.io/v1beta1" is not supported`},
		{"other group", request("kubelet.config.k8s.io/v1", "CredentialProviderRequest", hour), "",
			`apiVersion "kubelet.config.k8s.io/v1" is not supported`},
		{"no apiVersion", `{"kind":"CredentialProviderRequest","image":"x"}`, "", `apiVersion "" is not supported`},
		{"wrong kind", request(v1, "CredentialProviderResponse", hour), "", `kind "CredentialProviderResponse" is not a CredentialProviderRequest`},
		{"not JSON", "image=x", "", "not a JSON object"},
		{"token of the wrong type", `{"apiVersion":"` + v1 + `","kind":"CredentialProviderRequest","serviceAccountToken":7}`, "", "decode the CredentialProviderRequest"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := runPlugin(strings.NewReader(tc.in), &out, provider{registry: "registry.ci.example.com", now: func() time.Time { return testNow }})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if out.Len() != 0 {
					t.Errorf("wrote %q on an error", out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("response\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func Test_runPluginRefusesHugeInput(t *testing.T) {
	in := strings.NewReader(`{"apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"` + strings.Repeat("a", maxRequestBytes) + `"}`)
	var out bytes.Buffer
	err := runPlugin(in, &out, provider{registry: "registry.ci.example.com", now: time.Now})
	if err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Fatalf("error %v", err)
	}
}

func TestCheckRegistry(t *testing.T) {
	for _, ok := range []string{"registry.ci.example.com", "localhost:5000", "127.0.0.1:8443", "[::1]:5000"} {
		if err := checkRegistry(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "https://registry.ci.example.com", "registry.ci.example.com/openshift", "a b", strings.Repeat("a", 254)} {
		if err := checkRegistry(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The kubelet reads the answer from stdout and, on a non-zero exit, logs
// stderr: the tests below run main in a child process, as the kubelet does.
const childEnv = "QCI_CREDENTIAL_PROVIDER_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runChild(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestMainAnswersOnStdout(t *testing.T) {
	tok := saToken(t, time.Now().Add(2*time.Hour))
	out, errOut, code := runChild(t, request("credentialprovider.kubelet.k8s.io/v1", "CredentialProviderRequest", tok), "-registry", "registry.ci.example.com")
	if code != 0 || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{`"cacheKeyType":"Registry"`, `"password":"` + tok + `"`, `"username":"serviceaccount"`} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout %s lacks %s", out, want)
		}
	}
}

func TestMainRefusesARequestWithoutAToken(t *testing.T) {
	out, errOut, code := runChild(t, request("credentialprovider.kubelet.k8s.io/v1", "CredentialProviderRequest", ""), "-registry", "registry.ci.example.com")
	if code == 0 {
		t.Fatal("exit 0 without a token")
	}
	if out != "" {
		t.Errorf("stdout %q, want nothing", out)
	}
	if !strings.Contains(errOut, "qci-credential-provider: the CredentialProviderRequest holds no serviceAccountToken") ||
		!strings.Contains(errOut, "tokenAttributes.serviceAccountTokenAudience") {
		t.Errorf("stderr %q does not say what to fix", errOut)
	}
}

func TestMainNeedsTheRegistry(t *testing.T) {
	_, errOut, code := runChild(t, "", "")
	if code != 2 || !strings.Contains(errOut, "-registry is required") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
