package function_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function"
)

func TestFromEnvNamesBadVariables(t *testing.T) {
	t.Setenv("QCI_ROBOT_USERNAME", "")
	t.Setenv("QCI_ROBOT_PASSWORD", "")
	t.Setenv("QCI_SIGNING_KEY", "short")
	h := function.NewFromEnv()
	for range 2 { // the error is kept, not recomputed
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/", nil))
		body := rec.Body.String()
		if rec.Code != http.StatusInternalServerError || !strings.Contains(body, "QCI_ROBOT_USERNAME") || !strings.Contains(body, "QCI_SIGNING_KEY") {
			t.Fatalf("%d %s", rec.Code, body)
		}
		if strings.Contains(body, `"short"`) {
			t.Errorf("the error shows the key: %s", body)
		}
	}
}

func TestFromEnvServes(t *testing.T) {
	t.Setenv("QCI_ROBOT_USERNAME", robotUser)
	t.Setenv("QCI_ROBOT_PASSWORD", robotPass)
	t.Setenv("QCI_SIGNING_KEY", "0123456789abcdef0123456789abcdef")
	t.Setenv("QCI_KUBECONFIG", "")
	h := function.NewFromEnv()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://registry.example.com/v2/", nil))
	if rec.Code != http.StatusUnauthorized || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer realm="http://registry.example.com/v2/auth"`) {
		t.Errorf("%d %v", rec.Code, rec.Header())
	}
}
