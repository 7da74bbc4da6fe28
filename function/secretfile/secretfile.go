// Package secretfile notices when mounted secret files change. Kubernetes
// updates a mounted Secret in place (the kubelet writes a new directory and
// swaps the ..data symlink to it), and Cloud Run mounts Secret Manager
// versions as files: a process that read them once at start-up keeps stale
// values until it is restarted.
//
// A Set re-reads its files lazily, as client-go's cached file token source
// does: on use, at most once an interval, with no goroutine or watch, which
// suits an instance that scales to zero. It reports which files' bytes
// differ from the last accepted read; the caller validates them and either
// accepts them or keeps the values it has.
package secretfile

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Set is a group of secret files read together.
type Set struct {
	interval time.Duration
	now      func() time.Time

	next atomic.Int64 // unix nanoseconds: no read before this

	mu       sync.Mutex
	paths    map[string]string // name → path
	accepted map[string][]byte // name → bytes last accepted
	rejected map[string][]byte // name → bytes last rejected, not reported again
}

// New returns a Set of the files paths names (a name says what the file
// holds, e.g. QCI_ROBOT_PASSWORD; it appears in Changes, never the bytes),
// whose current bytes are accepted. It reads them at most once an interval.
// now is the clock; nil means time.Now.
func New(paths map[string]string, interval time.Duration, now func() time.Time) (*Set, error) {
	if now == nil {
		now = time.Now
	}
	s := &Set{interval: interval, now: now, paths: paths, accepted: map[string][]byte{}, rejected: map[string][]byte{}}
	for name, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("secretfile: %s: %w", name, err)
		}
		s.accepted[name] = b
	}
	s.next.Store(now().Add(interval).UnixNano())
	return s, nil
}

// Due reports whether the interval has passed since the last read: a
// check costs nothing until then. It is safe to call from many goroutines.
func (s *Set) Due() bool { return s.now().UnixNano() >= s.next.Load() }

// Changes is what a Check found: the new bytes of the files that differ
// from the last accepted read.
type Changes struct {
	// Names are the changed files' names, sorted.
	Names []string
	// Contents are the bytes of every file of the set, changed or not.
	Contents map[string][]byte
}

// Check re-reads the files if the interval has passed since the last read
// and returns what changed, or nil when nothing did (or it is not time yet,
// or another Check is reading). A file that cannot be read counts as
// unchanged: the previous bytes stay, and err says why. Bytes that were
// rejected are not reported again until they change once more.
func (s *Set) Check() (*Changes, error) {
	if !s.mu.TryLock() { // another request is reading: go on with what is
		return nil, nil
	}
	defer s.mu.Unlock()
	now := s.now()
	if now.UnixNano() < s.next.Load() {
		return nil, nil
	}
	s.next.Store(now.Add(s.interval).UnixNano())
	var errs []error
	c := &Changes{Contents: make(map[string][]byte, len(s.paths))}
	for name, path := range s.paths {
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			b = s.accepted[name]
		}
		c.Contents[name] = b
		if !bytes.Equal(b, s.accepted[name]) {
			if r, ok := s.rejected[name]; ok && bytes.Equal(b, r) {
				continue
			}
			c.Names = append(c.Names, name)
		}
	}
	var err error
	if len(errs) > 0 {
		err = fmt.Errorf("secretfile: re-read: %v", errs)
	}
	if len(c.Names) == 0 {
		return nil, err
	}
	sort.Strings(c.Names)
	return c, err
}

// Accept makes c's contents the accepted bytes.
func (s *Set) Accept(c *Changes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, b := range c.Contents {
		s.accepted[name] = b
		delete(s.rejected, name)
	}
}

// Reject remembers c's changed contents as bad, so that the same bytes are
// not reported (and logged) again every interval.
func (s *Set) Reject(c *Changes) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range c.Names {
		s.rejected[name] = c.Contents[name]
	}
}
