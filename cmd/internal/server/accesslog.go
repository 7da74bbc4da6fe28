package server

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/qci-appci/qci-appci/function/metrics"
	"github.com/qci-appci/qci-appci/function/requestinfo"
)

// maxPending is how many bytes of access lines may wait for the writer
// before requests wait for it instead (a blocked log pipe slows requests
// rather than growing memory without bound).
const maxPending = 1 << 20

// AccessLog writes one JSON line per request: method, path, status, bytes,
// duration, user and upstream status, as Cloud Logging's httpRequest,
// beside the time, severity and message that NewLogger's lines have. The
// query is left out: it may hold a scope, never needed, and a client could
// put anything there.
//
// Lines are written by one goroutine, which writes everything that has
// come in since its last write in one Write call: one line a Write when
// requests are few, many under load, where a write system call a request
// would cost more than the line itself. A line waits only for the write
// before it, never for a timer. Close writes what is left.
type AccessLog struct {
	w       io.Writer
	mu      sync.Mutex
	room    *sync.Cond // signalled when pending has been taken
	pending []byte
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	// metrics, when set, count each request as its line is written.
	metrics *metrics.Metrics
}

// AccessLogOption configures an AccessLog.
type AccessLogOption func(*AccessLog)

// WithMetrics has the access log also record each request in m (the
// qci_http_* metrics): the status and size it logs are the ones counted.
func WithMetrics(m *metrics.Metrics) AccessLogOption {
	return func(a *AccessLog) { a.metrics = m }
}

// NewAccessLog starts the writer of access lines to w.
func NewAccessLog(w io.Writer, opts ...AccessLogOption) *AccessLog {
	a := &AccessLog{w: w, wake: make(chan struct{}, 1), done: make(chan struct{})}
	for _, o := range opts {
		o(a)
	}
	a.room = sync.NewCond(&a.mu)
	go a.writeLoop()
	return a
}

// Handler logs each request that next serves.
func (a *AccessLog) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		a.metrics.HTTPStarted()
		ctx, info := requestinfo.With(r.Context())
		rec := &recorder{ResponseWriter: rw, status: http.StatusOK}
		defer func() {
			status := rec.status
			if p := recover(); p != nil {
				status = 499 // aborted mid-answer: the client saw a broken response
				defer panic(p)
			}
			path, latency := r.URL.EscapedPath(), time.Since(start)
			if a.metrics != nil {
				a.metrics.HTTPFinished(metrics.RouteOf(path), r.Method, status, rec.bytes, latency)
			}
			a.add(&accessEntry{
				time: start, method: r.Method, path: path, status: status, size: rec.bytes,
				latency: latency, remoteIP: remoteIP(r.RemoteAddr), userAgent: r.UserAgent(),
				protocol: r.Proto, user: info.User, cluster: info.Cluster, upstreamStatus: info.UpstreamStatus,
			})
		}()
		next.ServeHTTP(rec, r.WithContext(ctx))
	})
}

// add queues e's line for the writer; after Close it writes it itself.
func (a *AccessLog) add(e *accessEntry) {
	a.mu.Lock()
	for len(a.pending) >= maxPending && !a.closed {
		a.room.Wait()
	}
	if a.closed {
		a.mu.Unlock()
		<-a.done // the writer's last Write has returned
		a.mu.Lock()
		_, _ = a.w.Write(appendAccessLine(nil, e))
		a.mu.Unlock()
		return
	}
	a.pending = appendAccessLine(a.pending, e)
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default: // the writer is already due to run
	}
}

func (a *AccessLog) writeLoop() {
	defer close(a.done)
	var batch []byte
	for range a.wake {
		a.mu.Lock()
		batch, a.pending = a.pending, batch[:0]
		closed := a.closed
		a.room.Broadcast()
		a.mu.Unlock()
		if len(batch) > 0 {
			_, _ = a.w.Write(batch)
		}
		if closed {
			return
		}
	}
}

// Close writes the lines not yet written and stops the writer; lines of
// later requests are written directly.
func (a *AccessLog) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	a.mu.Unlock()
	select {
	case a.wake <- struct{}{}:
	default:
	}
	<-a.done
}
