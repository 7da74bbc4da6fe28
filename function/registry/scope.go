package registry

import "strings"

// Scope is one requested or granted access, as in
// "repository:openshift/ci:pull".
type Scope struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// String renders the scope in the token-request form.
func (s Scope) String() string {
	return s.Type + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// ParseScopes parses every scope in values; each value may hold several
// space-separated scopes. Malformed scopes are dropped: a grant is the
// requested scopes intersected with policy, so what cannot be parsed is
// simply not granted.
func ParseScopes(values []string) []Scope {
	var scopes []Scope
	for _, v := range values {
		for _, field := range strings.Fields(v) {
			if s, ok := ParseScope(field); ok {
				scopes = append(scopes, s)
			}
		}
	}
	return scopes
}

// ParseScope parses "type:name:actions". The name may itself hold a colon
// (a host with a port), so the type ends at the first colon and the actions
// start after the last. Empty action names are dropped.
func ParseScope(s string) (Scope, bool) {
	first := strings.IndexByte(s, ':')
	last := strings.LastIndexByte(s, ':')
	if first <= 0 || last == first || last == len(s)-1 {
		return Scope{}, false
	}
	sc := Scope{Type: s[:first], Name: s[first+1 : last]}
	if sc.Name == "" {
		return Scope{}, false
	}
	for _, a := range strings.Split(s[last+1:], ",") {
		if a != "" {
			sc.Actions = append(sc.Actions, a)
		}
	}
	if len(sc.Actions) == 0 {
		return Scope{}, false
	}
	return sc, true
}

// PullScope is the scope that grants pull on repository.
func PullScope(repository string) Scope {
	return Scope{Type: "repository", Name: repository, Actions: []string{"pull"}}
}

// Allows reports whether scopes grant action on repository.
func Allows(scopes []Scope, repository, action string) bool {
	for _, s := range scopes {
		if s.Type != "repository" || s.Name != repository {
			continue
		}
		for _, a := range s.Actions {
			if a == action {
				return true
			}
		}
	}
	return false
}
