package secretfile_test

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/qci-appci/qci-appci/function/secretfile"
	"github.com/qci-appci/qci-appci/test/secretmount"
)

// TestCheckAfterKubeletSwap swaps a Secret mount as the kubelet does and
// steps an injected clock: nothing is re-read before the interval, a change
// is reported by name once, unchanged bytes are not, a rejected value is
// not reported again until it changes.
func TestCheckAfterKubeletSwap(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "robot")
	if err := secretmount.Write(dir, map[string]string{"username": "robot", "password": "one"}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s, err := secretfile.New(map[string]string{
		"QCI_ROBOT_USERNAME": filepath.Join(dir, "username"),
		"QCI_ROBOT_PASSWORD": filepath.Join(dir, "password"),
	}, time.Second, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	check := func(want ...string) *secretfile.Changes {
		t.Helper()
		c, err := s.Check()
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		if c != nil {
			got = c.Names
		}
		if !slices.Equal(got, want) {
			t.Fatalf("changed %v, want %v", got, want)
		}
		return c
	}
	if s.Due() {
		t.Error("due before the interval has passed")
	}
	now = now.Add(time.Second)
	if !s.Due() {
		t.Error("not due once the interval has passed")
	}
	check() // nothing changed
	if s.Due() {
		t.Error("due right after a check")
	}

	if err := secretmount.Write(dir, map[string]string{"username": "robot", "password": "two"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(500 * time.Millisecond)
	check() // not yet: read at most once a second
	now = now.Add(500 * time.Millisecond)
	c := check("QCI_ROBOT_PASSWORD")
	if string(c.Contents["QCI_ROBOT_PASSWORD"]) != "two" || string(c.Contents["QCI_ROBOT_USERNAME"]) != "robot" {
		t.Errorf("contents %q", c.Contents)
	}
	s.Accept(c)
	now = now.Add(time.Second)
	check() // accepted: no longer a change

	if err := secretmount.Write(dir, map[string]string{"username": "robot", "password": ""}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	s.Reject(check("QCI_ROBOT_PASSWORD"))
	now = now.Add(time.Second)
	check() // the same bad bytes are not reported again
	if err := secretmount.Write(dir, map[string]string{"username": "robot", "password": "three"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	check("QCI_ROBOT_PASSWORD")
}

// TestUnreadableFileKeepsTheValue checks that a file that disappears is
// an error, not a change to nothing.
func TestUnreadableFileKeepsTheValue(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	if err := secretmount.Write(dir, map[string]string{"keys": "k"}); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	s, err := secretfile.New(map[string]string{"QCI_SIGNING_KEY": path}, time.Second, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	if err := secretmount.Write(dir, map[string]string{"other": "x"}); err != nil { // the key is gone
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	c, err := s.Check()
	if c != nil || err == nil {
		t.Errorf("a vanished file: changes %v, error %v", c, err)
	}
}
