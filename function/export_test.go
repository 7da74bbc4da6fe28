package function

import (
	"net/http"
	"time"

	"github.com/qci-appci/qci-appci/function/config"
)

// NewWithSecretClock is New for a cfg with SecretFiles and a positive
// SecretReloadInterval, whose re-reads follow now instead of the wall
// clock, so that a test decides when the interval has passed.
func NewWithSecretClock(cfg config.Config, now func() time.Time) (http.Handler, error) {
	parsed, err := cfg.Parse()
	if err != nil {
		return nil, err
	}
	r, err := newReloading(cfg, parsed, now)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// CheckSecretFiles re-reads the secret files of h, a handler of
// NewWithSecretClock, as the first request after the interval does, and
// returns once a change is in use or refused. Call it after moving the
// clock past the interval, with no request in flight that could start
// the same check.
func CheckSecretFiles(h http.Handler) {
	r := h.(*reloading)
	if changes, err := r.files.Check(); changes != nil || err != nil {
		r.reload(changes, err)
	}
}
