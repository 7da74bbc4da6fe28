// Package login decides who may log in: the upstream robot (a constant-time
// compare) or a cluster user (TokenReview, then SubjectAccessReview), and
// sorts every failure into wrong credentials, not allowed, or unavailable.
package login

import (
	"crypto/subtle"
	"errors"
)

// Errors of a login. The auth handler answers 401, 403 and 503 for them.
var (
	// ErrBadCredentials: unknown user, wrong password, invalid token.
	ErrBadCredentials = errors.New("wrong credentials")
	// ErrDenied: authenticated, but not allowed to pull.
	ErrDenied = errors.New("not allowed to pull")
	// ErrUnavailable: the cluster API could not answer.
	ErrUnavailable = errors.New("cluster API unavailable")
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

// Robot checks the robot credentials.
type Robot struct {
	username, password []byte
}

// NewRobot returns a checker for the robot's username and password.
func NewRobot(username, password string) *Robot {
	return &Robot{username: []byte(username), password: []byte(password)}
}

// Is reports, in constant time for equal lengths, whether user is the robot.
func (r *Robot) Is(user string) bool {
	return subtle.ConstantTimeCompare([]byte(user), r.username) == 1
}

// Check checks the robot's password; call it only when Is(user).
func (r *Robot) Check(user, password string) error {
	u := subtle.ConstantTimeCompare([]byte(user), r.username)
	p := subtle.ConstantTimeCompare([]byte(password), r.password)
	if u&p != 1 {
		return ErrBadCredentials
	}
	return nil
}
