package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/qci-appci/qci-appci/function/login"
)

func post(body string) (*httptest.ResponseRecorder, *http.Request) {
	r := httptest.NewRequest(http.MethodPost, "/v2/auth", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return httptest.NewRecorder(), r
}

func TestParsePost(t *testing.T) {
	w, r := post("grant_type=password&username=u&password=p&scope=repository:a:pull&scope=repository:b:pull+repository:c:pull")
	req, err := parsePost(w, r)
	if err != nil || req.grant != "password" || req.username != "u" || req.password != "p" || !req.wantRefresh || len(req.scopes) != 2 {
		t.Errorf("%+v %v", req, err)
	}
	w, r = post("grant_type=refresh_token&refresh_token=rt&scope=repository:a:pull")
	req, err = parsePost(w, r)
	if err != nil || req.grant != "refresh_token" || req.refreshToken != "rt" || req.wantRefresh {
		t.Errorf("%+v %v", req, err)
	}
}

func FuzzParsePost(f *testing.F) {
	f.Add("grant_type=password&username=u&password=p&scope=repository:openshift/ci:pull")
	f.Add("grant_type=refresh_token&refresh_token=x")
	f.Add("%zz&&==")
	f.Fuzz(func(t *testing.T, body string) {
		w, r := post(body)
		req, err := parsePost(w, r)
		if err != nil {
			if !errors.Is(err, errBadRequest) && !errors.Is(err, login.ErrBadCredentials) {
				t.Fatalf("unexpected error kind %v", err)
			}
			return
		}
		switch req.grant {
		case "password":
			if req.password == "" {
				t.Fatalf("password grant without password accepted: %q", body)
			}
		case "refresh_token":
			if req.refreshToken == "" {
				t.Fatalf("refresh grant without token accepted: %q", body)
			}
		default:
			t.Fatalf("grant %q accepted", req.grant)
		}
	})
}
