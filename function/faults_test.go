package function_test

import (
	"net/http"
	"testing"
)

func TestUpstreamRestartRefetchesToken(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	tok := e.pullToken()
	if resp, _ := e.get("/v2/openshift/ci/manifests/"+tag, tok); resp.StatusCode != 200 {
		t.Fatalf("first pull: %d", resp.StatusCode)
	}
	fetches := e.reg.TokenFetches()
	if err := e.reg.Restart(); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get("/v2/openshift/ci/manifests/"+tag, tok)
	if resp.StatusCode != 200 {
		t.Fatalf("after upstream restart: %d %s", resp.StatusCode, body)
	}
	if n := e.reg.TokenFetches() - fetches; n != 1 {
		t.Errorf("%d token fetches after the restart, want 1", n)
	}
}

func TestUpstreamDownIs503ThenRecovers(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	tok := e.pullToken()
	if err := e.reg.Stop(); err != nil {
		t.Fatal(err)
	}
	resp, body := e.get("/v2/openshift/ci/manifests/"+tag, tok)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || registryError(t, resp, body) != "UNAVAILABLE" {
		t.Errorf("upstream down: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	// Logins do not depend on the upstream.
	if resp, _, _ := e.login(robotUser, robotPass, pullScope); resp.StatusCode != 200 {
		t.Errorf("login while the upstream is down: %d", resp.StatusCode)
	}
	if err := e.reg.Resume(); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.get("/v2/openshift/ci/manifests/"+tag, tok); resp.StatusCode != 200 {
		t.Errorf("after the upstream came back: %d %s", resp.StatusCode, body)
	}
}

func TestRobotRefusedUpstreamIs503(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	e.reg.SetPassword("rotated-upstream") // before the login, whose token prefetch would otherwise still succeed
	tok := e.pullToken()
	resp, body := e.get("/v2/openshift/ci/manifests/"+tag, tok)
	if resp.StatusCode != http.StatusServiceUnavailable || registryError(t, resp, body) != "UNAVAILABLE" {
		t.Errorf("robot refused: %d %s", resp.StatusCode, body)
	}
}

func TestConcurrentColdRequestsFetchOneToken(t *testing.T) {
	e := newEnv(t, envOptions{noCluster: true})
	before := e.reg.TokenFetches()
	tok := e.pullToken() // its token prefetch and the requests below share one fetch
	e.concurrently(100, func() *http.Request {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/openshift/ci/manifests/"+tag, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return req
	})
	if n := e.reg.TokenFetches() - before; n != 1 {
		t.Errorf("%d upstream token fetches for 100 concurrent cold requests, want 1", n)
	}
}
