package login

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

const (
	robotUser = "openshift+ci_robot"
	robotPass = "robot-password-upstream"
)

func TestRobotCheck(t *testing.T) {
	r := NewRobot(robotUser, robotPass)
	if err := r.Check(robotUser, robotPass); err != nil {
		t.Errorf("right credentials: %v", err)
	}
	for _, c := range []struct{ user, pass string }{
		{robotUser, robotPass + "x"},
		{robotUser, robotPass[:len(robotPass)-1]},
		{robotUser, ""},
		{"Openshift+ci_robot", robotPass},
		{"someone", robotPass},
	} {
		if err := r.Check(c.user, c.pass); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("Check(%q, %q) = %v, want ErrBadCredentials", c.user, c.pass, err)
		}
	}
}

// The compare sees fixed-size digests only, so its time cannot depend on
// the length of the robot's password (subtle.ConstantTimeCompare returns
// at once for inputs of different lengths).
func TestRobotComparesFixedSizeDigests(t *testing.T) {
	r := NewRobot(robotUser, robotPass)
	var lengths []int
	r.compare = func(a, b []byte) int {
		lengths = append(lengths, len(a), len(b))
		return compareBytes(a, b)
	}
	for _, p := range []string{"", "x", robotPass, strings.Repeat("p", 4096)} {
		_ = r.Check(robotUser, p)
		_ = r.IsPassword(p)
	}
	_ = r.Is("x")
	_ = r.Reserved(strings.Repeat("u", 1000))
	if len(lengths) == 0 {
		t.Fatal("the robot compare was not called")
	}
	for _, n := range lengths {
		if n != sha256.Size {
			t.Fatalf("the robot compare got %d bytes, want digests of %d: lengths %v", n, sha256.Size, lengths)
		}
	}
}

func compareBytes(a, b []byte) int {
	if string(a) == string(b) {
		return 1
	}
	return 0
}

func TestRobotReservedNames(t *testing.T) {
	r := NewRobot(robotUser, robotPass)
	for _, u := range []string{robotUser, "OpenShift+CI_Robot", "OPENSHIFT+CI_ROBOT", "openshift ci_robot", "OpenShift CI_robot"} {
		if !r.Reserved(u) {
			t.Errorf("Reserved(%q) = false, want true", u)
		}
	}
	for _, u := range []string{"openshift+ci_robot2", "openshift", "", "openshift+ci-robot", " openshift+ci_robot"} {
		if r.Reserved(u) {
			t.Errorf("Reserved(%q) = true, want false", u)
		}
	}
	if !r.Is(robotUser) || r.Is("OpenShift+CI_Robot") {
		t.Error("Is must match the exact name only")
	}
}

func TestRobotIsPassword(t *testing.T) {
	r := NewRobot(robotUser, robotPass)
	if !r.IsPassword(robotPass) || r.IsPassword(robotPass+" ") || r.IsPassword("") {
		t.Error("IsPassword must match the robot password exactly")
	}
}

func TestPlausibleToken(t *testing.T) {
	good := []string{
		"sha256~alice-cluster-token",
		"sha256~" + strings.Repeat("A", 43),
		"eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2lnbmF0dXJl",
		"abcdef.0123456789abcdef", // bootstrap token
		"YWJj+/de==",              // standard base64 with padding
		strings.Repeat("a", MaxTokenBytes),
	}
	for _, s := range good {
		if !PlausibleToken(s) {
			t.Errorf("PlausibleToken(%.40q) = false, want true", s)
		}
	}
	bad := []string{
		"",
		strings.Repeat("a", MaxTokenBytes+1),
		"two words",
		"tab\there",
		"nul\x00",
		"quote\"",
		"uni\u00e9",
		"a=b",
		"=",
		"colon:token",
		"semi;colon",
	}
	for _, s := range bad {
		if PlausibleToken(s) {
			t.Errorf("PlausibleToken(%.40q) = true, want false", s)
		}
	}
}
