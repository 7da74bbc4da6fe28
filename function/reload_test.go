package function_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
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
