package function

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/secretfile"
)

// reloading serves with a handler built from the configuration and, when a
// secret file given as <NAME>_FILE changes, with one built anew from the
// same long-lived parts and the new values: a new robot password is checked
// at login and used for the next upstream token (the token source that
// logged in with the old one is dropped with its cached token), new signing
// keys sign and verify. What no secret determines is kept (see parts): the
// upstream connections, the review caches and cluster clients, the
// failed-login limiter, the manifest cache. New values that do not validate
// (an empty file, a short key) are refused with an ERROR line and the
// previous handler keeps serving. Requests in flight finish on the handler
// they started on.
//
// The files are re-read at most once per cfg.SecretReloadInterval, by a
// goroutine that the first request after it starts: no request waits for
// the read (on Cloud Run, reading a mounted secret asks Secret Manager),
// and nothing runs while no request comes.
type reloading struct {
	log      *slog.Logger
	files    *secretfile.Set
	current  atomic.Pointer[http.Handler]
	checking atomic.Bool

	parts *parts // built once, shared by every handler

	mu      sync.Mutex    // one reload at a time
	cfg     config.Config // the configuration current was built from
	secrets *secrets      // what current was built from cfg's secrets
}

// newReloading builds the handler of cfg, which New validated into parsed
// and whose SecretFiles are watched; now is the clock of the re-reads
// (nil: time.Now).
func newReloading(cfg config.Config, parsed config.Parsed, now func() time.Time) (*reloading, error) {
	files, err := secretfile.New(cfg.SecretFiles, cfg.SecretReloadInterval.Duration, now)
	if err != nil {
		return nil, err
	}
	cfg.SecretFiles = nil
	p, err := newParts(cfg, parsed)
	if err != nil {
		return nil, err
	}
	h, s, err := p.handler(cfg, nil)
	if err != nil {
		return nil, err
	}
	r := &reloading{log: p.log, files: files, parts: p, cfg: cfg, secrets: s}
	r.current.Store(&h)
	return r, nil
}

func (r *reloading) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.files.Due() && r.checking.CompareAndSwap(false, true) {
		go func() {
			defer r.checking.Store(false)
			if changes, err := r.files.Check(); changes != nil || err != nil {
				r.reload(changes, err)
			}
		}()
	}
	(*r.current.Load()).ServeHTTP(w, req)
}

func (r *reloading) reload(changes *secretfile.Changes, readErr error) {
	if readErr != nil {
		r.log.Error("a secret file could not be re-read; keeping its previous value", "error", readErr)
	}
	if changes == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg := r.cfg
	for name, b := range changes.Contents {
		cfg.SetSecret(name, b)
	}
	err := cfg.ValidateSecrets()
	var h http.Handler
	var s *secrets
	if err == nil {
		h, s, err = r.parts.handler(cfg, r.secrets)
	}
	if err != nil {
		r.files.Reject(changes)
		r.log.Error("a secret file changed but its new value is invalid; keeping the previous values",
			"changed", changes.Names, "error", err)
		return
	}
	var replaced []string
	if s.keys != r.secrets.keys {
		replaced = append(replaced, "signing keys")
	}
	if s.source != r.secrets.source {
		replaced = append(replaced, "robot login", "upstream token")
	}
	r.cfg, r.secrets = cfg, s
	r.current.Store(&h)
	r.files.Accept(changes)
	r.log.Info("a secret file changed: its new value is in use", "changed", changes.Names, "replaced", replaced)
}
