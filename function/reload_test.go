package function_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function"
	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/test/secretmount"
)

// TestSecretFilesReloadUnderLoad swaps the robot's Secret mount while
// logins run concurrently (run it with -race): every login answers with the
// old or the new password, and the new one soon logs in, the old one not.
func TestSecretFilesReloadUnderLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "robot")
	if err := secretmount.Write(dir, map[string]string{"password": "old-password\n"}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.RobotUsername, cfg.RobotPassword = "robot", "old-password"
	cfg.SigningKey = "0123456789abcdef0123456789abcdef"
	cfg.SecretFiles = map[string]string{"QCI_ROBOT_PASSWORD": filepath.Join(dir, "password")}
	cfg.SecretReloadInterval = config.NewDuration(time.Millisecond)
	h, err := function.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	login := func(pass string) int {
		req := httptest.NewRequest(http.MethodGet, "http://registry.example.com/v2/auth", nil)
		req.SetBasicAuth("robot", pass)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if a, b := login("old-password"), login("new-password"); a != http.StatusOK && b != http.StatusOK {
					t.Errorf("neither password logs in: %d %d", a, b)
					return
				}
			}
		}()
	}
	if err := secretmount.Write(dir, map[string]string{"password": "new-password\n"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for login("new-password") != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("the new password never logs in")
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if c := login("old-password"); c != http.StatusUnauthorized {
		t.Errorf("the old password after the rotation: %d", c)
	}
}

// testClock is a clock the test moves; the server's goroutines read it.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// reloadInterval is long: only rotate moves the test clock past it, so no
// request starts a re-read of its own.
const reloadInterval = time.Hour

// rotatingEnv is an env whose robot password and signing keys are given as
// files of a Secret mount, QCI_ROBOT_PASSWORD_FILE=<dir>/password and
// QCI_SIGNING_KEY_FILE=<dir>/signing-key, as the kubelet writes them.
type rotatingEnv struct {
	*env
	dir   string
	mount map[string]string // key → contents
	clock *testClock
	h     http.Handler
}

func newRotatingEnv(t *testing.T, o envOptions) *rotatingEnv {
	t.Helper()
	r := &rotatingEnv{dir: filepath.Join(t.TempDir(), "secrets"), clock: newTestClock()}
	configure := o.configure
	o.configure = func(cfg *config.Config) {
		if configure != nil {
			configure(cfg)
		}
		r.mount = map[string]string{"password": string(cfg.RobotPassword) + "\n", "signing-key": string(cfg.SigningKey) + "\n"}
		if err := secretmount.Write(r.dir, r.mount); err != nil {
			t.Fatal(err)
		}
		cfg.SecretFiles = map[string]string{
			"QCI_ROBOT_PASSWORD": filepath.Join(r.dir, "password"),
			"QCI_SIGNING_KEY":    filepath.Join(r.dir, "signing-key"),
		}
		cfg.SecretReloadInterval = config.NewDuration(reloadInterval)
	}
	o.newHandler = func(cfg config.Config) (http.Handler, error) {
		h, err := function.NewWithSecretClock(cfg, r.clock.Now)
		r.h = h
		return h, err
	}
	r.env = newEnv(t, o)
	return r
}

// rotate writes key's new contents the way the kubelet updates a Secret,
// lets the reload interval pass and returns once the function re-read the
// mount.
func (r *rotatingEnv) rotate(key, contents string) {
	r.t.Helper()
	r.mount[key] = contents
	if err := secretmount.Write(r.dir, r.mount); err != nil {
		r.t.Fatal(err)
	}
	r.clock.Advance(reloadInterval)
	function.CheckSecretFiles(r.h)
}

// kid is the key id in the header of the JWT tok.
func kid(t *testing.T, tok string) string {
	t.Helper()
	header, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		t.Fatalf("JWT header: %v", err)
	}
	var h struct{ Kid string }
	if err := json.Unmarshal(b, &h); err != nil || h.Kid == "" {
		t.Fatalf("JWT header %s: %v", b, err)
	}
	return h.Kid
}

func randomKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return hex.EncodeToString(k)
}

// TestSigningKeyRotationKeepsClusterLogins rotates the signing keys in
// place: tokens are signed with the new key and the old one verifies while
// it is listed, and a user whose login was reviewed logs in again from the
// review cache, without a new TokenReview or SubjectAccessReview at the
// cluster.
func TestSigningKeyRotationKeepsClusterLogins(t *testing.T) {
	t.Run("QCI_KUBECONFIG", func(t *testing.T) { testSigningKeyRotationKeepsClusterLogins(t, "", nil, nil) })
	t.Run("QCI_CLUSTERS_FILE", func(t *testing.T) {
		clusters := filepath.Join(t.TempDir(), "clusters.yaml")
		testSigningKeyRotationKeepsClusterLogins(t, "app-ci", func(cfg *config.Config) {
			if err := os.WriteFile(clusters, []byte("clusters:\n- name: app-ci\n  kubeconfig: "+cfg.Kubeconfig+"\n  opaqueTokens: true\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg.ClustersFile, cfg.Kubeconfig = clusters, ""
		}, func() {
			// The clusters file is read at start only: a rotation
			// neither reads it again nor fails on it.
			if err := os.WriteFile(clusters, []byte("clusters: []\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		})
	})
}

// testSigningKeyRotationKeepsClusterLogins is the test of the cluster
// login that configure sets up (nil: QCI_KUBECONFIG), whose tokens name
// cluster (qci_cluster; "" for none); beforeRotate, if set, runs just
// before the first rotation.
func testSigningKeyRotationKeepsClusterLogins(t *testing.T, cluster string, configure func(*config.Config), beforeRotate func()) {
	r := newRotatingEnv(t, envOptions{configure: configure})
	manifest := "/v2/openshift/ci/manifests/" + tag
	resp, before, body := r.login("anyone", aliceToken, pullScope)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice: %d %s", resp.StatusCode, body)
	}
	if c, _ := claimsOf(t, before.Token)["qci_cluster"].(string); c != cluster {
		t.Fatalf("the token names cluster %q, want %q", c, cluster)
	}
	reviews, access := len(r.cluster.TokenReviews()), len(r.cluster.SubjectAccessReviews())

	newKey := randomKey()
	if beforeRotate != nil {
		beforeRotate()
	}
	r.rotate("signing-key", newKey+"\n"+r.key+"\n")
	if logs := r.logs.String(); !strings.Contains(logs, `"changed":["QCI_SIGNING_KEY"],"replaced":["signing keys"]`) || strings.Contains(logs, newKey) {
		t.Errorf("the rotation's log line is missing, or names the key:\n%s", logs)
	}
	resp, after, body := r.login("anyone", aliceToken, pullScope)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("alice after the rotation: %d %s", resp.StatusCode, body)
	}
	if n, m := len(r.cluster.TokenReviews()), len(r.cluster.SubjectAccessReviews()); n != reviews || m != access {
		t.Errorf("the cluster reviewed alice again after a signing-key rotation: TokenReviews %d → %d, SubjectAccessReviews %d → %d",
			reviews, n, access, m)
	}
	if kid(t, after.Token) == kid(t, before.Token) {
		t.Errorf("the token after the rotation is signed with the old key (kid %s)", kid(t, after.Token))
	}
	for name, tok := range map[string]string{"old": before.Token, "new": after.Token} {
		if resp, body := r.get(manifest, tok); resp.StatusCode != http.StatusOK {
			t.Errorf("pull with the %s key's token while both are listed: %d %s", name, resp.StatusCode, body)
		}
	}

	r.rotate("signing-key", newKey+"\n")
	if resp, _ := r.get(manifest, before.Token); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("pull with the removed key's token: %d, want 401", resp.StatusCode)
	}
	if resp, body := r.get(manifest, after.Token); resp.StatusCode != http.StatusOK {
		t.Errorf("pull with the new key's token: %d %s", resp.StatusCode, body)
	}
}

// TestRotationKeepsFailedLoginLimit: an address past its failed-login
// limit stays limited across a secret rotation (429 before any review), so
// guesses timed around rotations get no fresh burst.
func TestRotationKeepsFailedLoginLimit(t *testing.T) {
	r := newRotatingEnv(t, envOptions{configure: func(cfg *config.Config) {
		cfg.LoginBurst, cfg.LoginRate = 2, 0.001 // no refill within the test
	}})
	for range 2 {
		if resp, _, _ := r.login(robotUser, "guessed-password", pullScope); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong robot password: %d", resp.StatusCode)
		}
	}
	if resp, _, body := r.login("carol", carolToken, pullScope); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("cluster login from the limited address: %d %s, want 429", resp.StatusCode, body)
	}
	r.reg.SetPassword("rotated-robot-password")
	r.rotate("password", "rotated-robot-password\n")
	r.rotate("signing-key", randomKey()+"\n")
	resp, _, body := r.login("carol", carolToken, pullScope)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("cluster login from the limited address after the rotations: %d Retry-After %q %s, want 429",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if n := len(r.cluster.TokenReviews()); n != 0 {
		t.Errorf("%d TokenReviews for a limited address", n)
	}
}

// TestRobotPasswordRotationFetchesNewUpstreamToken rotates the robot
// password on the upstream and in the mount: the old password stops
// logging in, the new one logs in, and the next pull is forwarded with an
// upstream token fetched with the new password, not the one cached before.
func TestRobotPasswordRotationFetchesNewUpstreamToken(t *testing.T) {
	r := newRotatingEnv(t, envOptions{})
	manifest := "/v2/openshift/ci/manifests/" + tag
	if resp, body := r.get(manifest, r.pullToken()); resp.StatusCode != http.StatusOK {
		t.Fatalf("pull: %d %s", resp.StatusCode, body)
	}
	oldBearer := lastManifestBearer(t, r.env)

	const newPass = "rotated-robot-password"
	r.reg.SetPassword(newPass)
	r.rotate("password", newPass+"\n")
	if logs := r.logs.String(); !strings.Contains(logs, `"changed":["QCI_ROBOT_PASSWORD"],"replaced":["robot login","upstream token"]`) ||
		strings.Contains(logs, newPass) {
		t.Errorf("the rotation's log line is missing, or names the password:\n%s", logs)
	}
	r.reg.ResetRequests()
	if resp, _, _ := r.login(robotUser, robotPass, pullScope); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the old robot password after the rotation: %d, want 401", resp.StatusCode)
	}
	resp, ans, body := r.login(robotUser, newPass, url.Values{"scope": {"repository:" + repo + ":pull"}, "service": {r.host()}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the new robot password: %d %s", resp.StatusCode, body)
	}
	if resp, body := r.get(manifest, ans.Token); resp.StatusCode != http.StatusOK {
		t.Fatalf("pull after the rotation: %d %s", resp.StatusCode, body)
	}
	if b := lastManifestBearer(t, r.env); b == oldBearer {
		t.Error("the pull after the rotation was forwarded with the upstream token cached before it")
	}
	realm, _ := url.Parse(r.reg.Realm())
	var fetches []string
	for _, req := range r.reg.Requests() {
		if req.Path == realm.Path {
			probe := &http.Request{Header: req.Header}
			_, pass, _ := probe.BasicAuth()
			fetches = append(fetches, fmt.Sprintf("%s %d", pass, req.Status))
		}
	}
	if len(fetches) != 1 || fetches[0] != newPass+" 200" {
		t.Errorf("upstream token fetches after the rotation (password status): %q, want one with the new password", fetches)
	}
}

// lastManifestBearer is the Authorization of the last manifest request
// the upstream received.
func lastManifestBearer(t *testing.T, e *env) string {
	t.Helper()
	saw := e.upstreamSaw()
	for i := len(saw) - 1; i >= 0; i-- {
		if strings.Contains(saw[i].Path, "/manifests/") {
			return saw[i].Header.Get("Authorization")
		}
	}
	t.Fatal("the upstream received no manifest request")
	return ""
}

// TestRotationReusesUpstreamConnections: a pull after a signing-key
// rotation reaches the upstream over a connection opened before it, not
// over a new TCP connection (and TLS handshake, against quay.io).
func TestRotationReusesUpstreamConnections(t *testing.T) {
	r := newRotatingEnv(t, envOptions{noCluster: true})
	manifest := "/v2/openshift/ci/manifests/" + tag
	// Two pulls: the second one starts once any connection the first one
	// dialed is open (a dial that lost the race to an idle connection
	// still opens one, and the pool may hand it out next).
	for range 2 {
		if resp, body := r.get(manifest, r.pullToken()); resp.StatusCode != http.StatusOK {
			t.Fatalf("pull: %d %s", resp.StatusCode, body)
		}
	}
	before := r.reg.Connections()
	r.rotate("signing-key", randomKey()+"\n")
	r.reg.ResetRequests()
	if resp, body := r.get(manifest, r.pullToken()); resp.StatusCode != http.StatusOK {
		t.Fatalf("pull after the rotation: %d %s", resp.StatusCode, body)
	}
	var paths []string
	for _, req := range r.reg.Requests() {
		paths = append(paths, req.Path)
		if req.Path == manifest && !slices.Contains(before, req.RemoteAddr) {
			t.Errorf("the pull after the rotation came on a new connection (%s), not on one of before it (%v)", req.RemoteAddr, before)
		}
	}
	if len(paths) != 1 || paths[0] != manifest {
		t.Errorf("the upstream saw %q after the rotation, want only the manifest GET (the upstream token is kept)", paths)
	}
}
