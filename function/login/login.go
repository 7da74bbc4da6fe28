// Package login decides who may log in: the upstream robot (a constant-time
// compare of fixed-size digests) or a cluster user (TokenReview, then
// SubjectAccessReview), and sorts every failure into wrong credentials, not
// allowed, busy, or unavailable.
package login

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"strings"
)

// Errors of a login. The auth handler answers 401, 403, 503 (at once, with
// Retry-After) and 503 for them.
var (
	// ErrBadCredentials: unknown user, wrong password, invalid token.
	ErrBadCredentials = errors.New("wrong credentials")
	// ErrDenied: authenticated, but not allowed to pull.
	ErrDenied = errors.New("not allowed to pull")
	// ErrUnavailable: the cluster API could not answer.
	ErrUnavailable = errors.New("cluster API unavailable")
	// ErrBusy: too many reviews are in flight; the login was refused
	// before any review. It is not an outage of the cluster.
	ErrBusy = errors.New("too many cluster reviews in flight")
)

// Identity is who logged in.
type Identity struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
	// Cluster names the cluster that reviewed the token, when the function
	// knows several (QCI_CLUSTERS_FILE); empty with a single cluster.
	Cluster string
}

// Robot checks the robot credentials. It keeps SHA-256 digests only, and
// compares digests, so that neither the time of a compare nor anything it
// returns depends on the length of the robot's username or password.
type Robot struct {
	username, reserved, password [sha256.Size]byte
	// compare is subtle.ConstantTimeCompare; a test watches what it gets.
	compare func(a, b []byte) int
}

// NewRobot returns a checker for the robot's username and password.
func NewRobot(username, password string) *Robot {
	return &Robot{
		username: sha256.Sum256([]byte(username)),
		reserved: sha256.Sum256([]byte(foldName(username))),
		password: sha256.Sum256([]byte(password)),
		compare:  subtle.ConstantTimeCompare,
	}
}

// foldName is the form of a username in which the robot's name is
// reserved: case folded, and a space read as '+', which is what form or
// query decoding makes of a robot name such as "openshift+ci" sent
// unescaped.
func foldName(s string) string {
	return strings.ToLower(strings.ToUpper(strings.ReplaceAll(s, " ", "+")))
}

func (r *Robot) equal(a, b [sha256.Size]byte) bool {
	return r.compare(a[:], b[:]) == 1
}

// Is reports whether user is exactly the robot's username.
func (r *Robot) Is(user string) bool {
	return r.equal(sha256.Sum256([]byte(user)), r.username)
}

// Reserved reports whether user is the robot's username or differs from it
// only in case or by a '+' decoded to a space. A reserved name is never a
// cluster login: its password is never sent to the cluster.
func (r *Robot) Reserved(user string) bool {
	return r.equal(sha256.Sum256([]byte(foldName(user))), r.reserved)
}

// IsPassword reports whether password is the robot's password, whatever
// username came with it. A login that carries the robot's password under
// another name is refused before any review, so that the password never
// leaves the process except to the upstream's token endpoint.
func (r *Robot) IsPassword(password string) bool {
	return r.equal(sha256.Sum256([]byte(password)), r.password)
}

// Check checks the robot's credentials: the exact username and the
// password. Both compares always run.
func (r *Robot) Check(user, password string) error {
	u := r.equal(sha256.Sum256([]byte(user)), r.username)
	p := r.IsPassword(password)
	if !u || !p {
		return ErrBadCredentials
	}
	return nil
}
