package function

import (
	"net/http"
	"sync"

	"github.com/qci-appci/qci-appci/function/config"
	"github.com/qci-appci/qci-appci/function/registry"
)

// EntryPoint is the name the Cloud Functions source registers the function
// under with the Functions Framework: the root package that make
// gcf-source writes calls functions.HTTP(EntryPoint, NewFromEnv().ServeHTTP).
// This package does not import the framework, so that the container binary
// neither links it (nor the CloudEvents SDK) nor runs its init.
const EntryPoint = "QCIAppCI"

// FromEnv is a handler built from the environment on its first request, so
// that registering it costs nothing. When the environment is invalid every
// request gets 500 with a registry error naming the bad variables.
type FromEnv struct {
	once    sync.Once
	handler http.Handler
	err     error
}

// NewFromEnv returns a handler built lazily from the environment.
func NewFromEnv() *FromEnv { return &FromEnv{} }

// ServeHTTP builds the handler on the first call and serves with it.
func (f *FromEnv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.once.Do(func() {
		cfg, err := config.Load()
		if err != nil {
			f.err = err
			return
		}
		f.handler, f.err = New(cfg)
	})
	if f.err != nil {
		registry.WriteError(w, http.StatusInternalServerError, registry.CodeUnavailable, f.err.Error())
		return
	}
	f.handler.ServeHTTP(w, r)
}
