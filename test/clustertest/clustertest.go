// Package clustertest is a stand-in for a Kubernetes/OpenShift API server
// for fast tests and the demo: a TLS server on loopback that answers
// TokenReview and SubjectAccessReview in their real JSON wire format (the
// k8s.io/api types), requires the caller's own bearer token as a real API
// server does, and writes a real kubeconfig file for client-go. It can go
// down and forbid reviews on demand. It does not import testing.
package clustertest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// User is who a cluster token belongs to.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

type tokenEntry struct {
	user      User
	audiences []string // empty: the API server's default audience only
}

// DefaultAudience is the audience of tokens added without audiences.
const DefaultAudience = "https://kubernetes.default.svc"

// Server is the stand-in API server. Its methods are safe for concurrent use.
type Server struct {
	// Namespace is the only namespace in which SubjectAccessReviews for a
	// pull can be allowed (default "ocp"). Assign it right after Start, before
	// any request; use SetNamespace to change it while requests may be in
	// flight.
	Namespace string

	srv         *httptest.Server
	callerToken string

	mu            sync.Mutex
	tokens        map[string]tokenEntry
	allowedUsers  map[string]bool
	allowedGroups map[string]bool
	deniedUsers   map[string]bool
	// allowedOn are grants of AllowOn and AllowGroupOn, by onKey.
	allowedOn     map[onKey]bool
	down          bool
	forbid        bool
	tokenReviews  []authenticationv1.TokenReview
	accessReviews []authorizationv1.SubjectAccessReview
	failCode      int
	failSARCode   int
	evalError     string
	hold          chan struct{} // non-nil: reviews wait until it is closed
	arrived       chan struct{}
	abandoned     int
}

// Start starts the server on a loopback port.
func Start() (*Server, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("clustertest: %w", err)
	}
	s := &Server{
		callerToken:   "caller-" + hex.EncodeToString(b),
		Namespace:     "ocp",
		tokens:        map[string]tokenEntry{},
		allowedUsers:  map[string]bool{},
		allowedGroups: map[string]bool{},
		deniedUsers:   map[string]bool{},
	}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.StartTLS()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// URL is the server's https URL.
func (s *Server) URL() string { return s.srv.URL }

// SetNamespace sets Namespace safely while requests may be in flight.
func (s *Server) SetNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Namespace = ns
}

// CallerToken is the bearer token the server requires of its callers (the
// one WriteKubeconfig writes).
func (s *Server) CallerToken() string { return s.callerToken }

// WriteKubeconfig writes a kubeconfig for this server, with its CA and the
// bearer token it requires of callers, into dir and returns its path.
func (s *Server) WriteKubeconfig(dir string) (string, error) {
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["stand-in"] = &clientcmdapi.Cluster{Server: s.srv.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["qci-appci"] = &clientcmdapi.AuthInfo{Token: s.callerToken}
	cfg.Contexts["stand-in"] = &clientcmdapi.Context{Cluster: "stand-in", AuthInfo: "qci-appci"}
	cfg.CurrentContext = "stand-in"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", fmt.Errorf("clustertest: write kubeconfig: %w", err)
	}
	return path, nil
}

// AddToken makes token a valid cluster token of u, bound to audiences (none:
// the API server's default audience).
func (s *Server) AddToken(token string, u User, audiences ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.Groups = slices.Clone(u.Groups)
	if u.Extra != nil {
		extra := make(map[string][]string, len(u.Extra))
		for k, v := range u.Extra {
			extra[k] = slices.Clone(v)
		}
		u.Extra = extra
	}
	s.tokens[token] = tokenEntry{user: u, audiences: slices.Clone(audiences)}
}

// RemoveToken makes token invalid.
func (s *Server) RemoveToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// Allow lets user pull: SubjectAccessReviews for user (by spec.user) are
// allowed. It undoes Deny.
func (s *Server) Allow(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allowedUsers[user] = true
	delete(s.deniedUsers, user)
}

// onKey is one grant of AllowOn (user) or AllowGroupOn (group) in
// namespace, on the image stream name ("" for every one of the namespace).
type onKey struct {
	user, group, namespace, name string
}

// AllowOn lets user pull from the image stream name of namespace, as a
// RoleBinding of a Role with resourceNames [name] on imagestreams/layers
// does; name "" lets user pull every image stream of namespace. A review
// asks for one image stream, or (no name) for all of the namespace: a
// grant on one name does not allow the latter, as in RBAC.
func (s *Server) AllowOn(user, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allowedOn == nil {
		s.allowedOn = map[onKey]bool{}
	}
	s.allowedOn[onKey{user: user, namespace: namespace, name: name}] = true
}

// AllowGroupOn is AllowOn for the members of group.
func (s *Server) AllowGroupOn(group, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.allowedOn == nil {
		s.allowedOn = map[onKey]bool{}
	}
	s.allowedOn[onKey{group: group, namespace: namespace, name: name}] = true
}

// RevokeOn takes AllowOn(user, namespace, name) away.
func (s *Server) RevokeOn(user, namespace, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.allowedOn, onKey{user: user, namespace: namespace, name: name})
}

// allowedOnBy is who (a user or group) AllowOn or AllowGroupOn allows to
// pull as spec asks, or "". Called with s.mu held.
func (s *Server) allowedOnBy(spec *authorizationv1.SubjectAccessReviewSpec) string {
	ra := spec.ResourceAttributes
	if ra == nil || ra.Verb != "get" || ra.Group != "image.openshift.io" || ra.Resource != "imagestreams" || ra.Subresource != "layers" {
		return ""
	}
	names := []string{""} // a namespace-wide grant allows any name
	if ra.Name != "" {
		names = append(names, ra.Name)
	}
	for _, name := range names {
		if s.allowedOn[onKey{user: spec.User, namespace: ra.Namespace, name: name}] {
			return fmt.Sprintf("User %q", spec.User)
		}
		for _, g := range spec.Groups {
			if s.allowedOn[onKey{group: g, namespace: ra.Namespace, name: name}] {
				return fmt.Sprintf("Group %q", g)
			}
		}
	}
	return ""
}

// AllowGroup lets members of group pull: SubjectAccessReviews whose
// spec.groups hold group are allowed.
func (s *Server) AllowGroup(group string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.allowedGroups[group] = true
}

// Revoke takes Allow away from user (a group may still allow them), so
// reviews answer allowed false without an explicit denial, as RBAC does.
func (s *Server) Revoke(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.allowedUsers, user)
}

// RevokeGroup takes AllowGroup away from group.
func (s *Server) RevokeGroup(group string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.allowedGroups, group)
}

// Deny makes reviews for user answer an explicit denial (status.denied true,
// as a deny-capable authorizer would), whatever Allow and AllowGroup say.
func (s *Server) Deny(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.allowedUsers, user)
	s.deniedUsers[user] = true
}

// SetDown makes the server drop every connection without an answer, as an
// unreachable API server would look to a client, until SetDown(false):
// kept-alive connections are closed, and a new one is reset as soon as its
// request arrives, so a client gets a transport error (EOF or reset), never
// an HTTP status.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if down {
		s.srv.CloseClientConnections()
	}
}

// SetForbidReviews makes reviews answer a 403 Forbidden Status, as when the
// caller's service account lacks system:auth-delegator, until
// SetForbidReviews(false).
func (s *Server) SetForbidReviews(forbid bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forbid = forbid
}

// TokenReviews returns every TokenReview that reached the review, in order,
// with its spec as the client sent it (token included). Requests refused
// before it (401, 403, 415, down) are not recorded.
func (s *Server) TokenReviews() []authenticationv1.TokenReview {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tokenReviews)
}

// SubjectAccessReviews returns every SubjectAccessReview that reached the
// review, in order, with its spec as the client sent it (user, uid, groups,
// extra, attributes). Requests refused before it are not recorded.
func (s *Server) SubjectAccessReviews() []authorizationv1.SubjectAccessReview {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accessReviews)
}

// FailReviews makes both reviews answer a Status with code (400, 422,
// 429, 500, ...) after they are recorded, as an API server that refuses a
// review does, until FailReviews(0).
func (s *Server) FailReviews(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failCode = code
}

// FailAccessReviews makes SubjectAccessReviews alone answer a Status
// with code, as FailReviews does for both, until FailAccessReviews(0).
func (s *Server) FailAccessReviews(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failSARCode = code
}

// SetEvaluationError makes SubjectAccessReviews that nothing allows and
// nothing denies carry status.evaluationError msg (allowed false), as when
// an authorizer failed to decide, until SetEvaluationError("").
func (s *Server) SetEvaluationError(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evalError = msg
}

// HoldReviews makes every review, once recorded, wait until release is
// called or its caller hangs up (counted by Abandoned), as a slow API
// server would. Each held review sends once on arrived (a buffer of 4096;
// more are not signalled). Calling release again does nothing.
func (s *Server) HoldReviews() (arrived <-chan struct{}, release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	hold := make(chan struct{})
	s.hold = hold
	s.arrived = make(chan struct{}, 4096)
	var once sync.Once
	return s.arrived, func() {
		once.Do(func() {
			s.mu.Lock()
			if s.hold == hold {
				s.hold = nil
			}
			s.mu.Unlock()
			close(hold)
		})
	}
}

// Abandoned counts the held reviews whose caller hung up before release.
func (s *Server) Abandoned() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.abandoned
}

// TokenReviewCount is len(TokenReviews()) without the copy.
func (s *Server) TokenReviewCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokenReviews)
}

// held waits while reviews are held; when the caller hangs up, it aborts
// the handler (http.ErrAbortHandler) and nothing is sent. It also
// answers the status set by FailReviews, reporting false after doing so.
func (s *Server) held(w http.ResponseWriter, r *http.Request, access bool) bool {
	s.mu.Lock()
	hold, arrived, code := s.hold, s.arrived, s.failCode
	if access && s.failSARCode != 0 {
		code = s.failSARCode
	}
	s.mu.Unlock()
	if hold != nil {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-hold:
		case <-r.Context().Done():
			s.mu.Lock()
			s.abandoned++
			s.mu.Unlock()
			// Send nothing: a handler that just returned would answer an
			// empty 200 on a connection still open, which a client could
			// read before it sees its own cancellation.
			panic(http.ErrAbortHandler)
		}
	}
	if code != 0 {
		writeStatus(w, code, statusReason(code), fmt.Sprintf("clustertest: review refused with %d", code))
		return false
	}
	return true
}

func statusReason(code int) metav1.StatusReason {
	switch code {
	case http.StatusBadRequest:
		return metav1.StatusReasonBadRequest
	case http.StatusUnprocessableEntity:
		return metav1.StatusReasonInvalid
	case http.StatusTooManyRequests:
		return metav1.StatusReasonTooManyRequests
	case http.StatusNotFound:
		return metav1.StatusReasonNotFound
	default:
		return metav1.StatusReasonInternalError
	}
}

const (
	tokenReviewPath  = "/apis/authentication.k8s.io/v1/tokenreviews"
	accessReviewPath = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
)

// serve checks a request in the API server's order (authentication,
// authorization, then the body) and hands it to its review.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down, forbid := s.down, s.forbid
	s.mu.Unlock()
	if down {
		hijackAndClose(w)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.callerToken {
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
		return
	}
	resource, group := "", ""
	switch r.URL.Path {
	case tokenReviewPath:
		resource, group = "tokenreviews", "authentication.k8s.io"
	case accessReviewPath:
		resource, group = "subjectaccessreviews", "authorization.k8s.io"
	default:
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource")
		return
	}
	if r.Method != http.MethodPost {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("%s is not supported on %s; only create (POST) is", r.Method, resource))
		return
	}
	if forbid {
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, fmt.Sprintf(
			`%s.%s is forbidden: User "system:serviceaccount:qci:qci-appci" cannot create resource %q in API group %q at the cluster scope`,
			resource, group, resource, group))
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		writeStatus(w, http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			fmt.Sprintf("clustertest speaks JSON only (set the client's ContentType to application/json); got Content-Type %q", r.Header.Get("Content-Type")))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "clustertest: read body: "+err.Error())
		return
	}
	if r.URL.Path == tokenReviewPath {
		s.tokenReview(w, r, body)
		return
	}
	s.accessReview(w, r, body)
}

func (s *Server) tokenReview(w http.ResponseWriter, r *http.Request, body []byte) {
	var tr authenticationv1.TokenReview
	if err := json.Unmarshal(body, &tr); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "clustertest: decode TokenReview: "+err.Error())
		return
	}
	s.mu.Lock()
	s.tokenReviews = append(s.tokenReviews, tr)
	entry, known := s.tokens[tr.Spec.Token]
	s.mu.Unlock()
	if !s.held(w, r, false) {
		return
	}
	if tr.Spec.Token == "" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "token is required for TokenReview in authentication")
		return
	}
	tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
	tr.Spec.Token = "" // a real API server does not echo it either
	requested := tr.Spec.Audiences
	if len(requested) == 0 {
		requested = []string{DefaultAudience}
	}
	bound := entry.audiences
	if len(bound) == 0 {
		bound = []string{DefaultAudience}
	}
	var granted []string
	for _, a := range requested {
		if slices.Contains(bound, a) {
			granted = append(granted, a)
		}
	}
	switch {
	case !known:
		tr.Status = authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, token lookup failed]"}
	case len(granted) == 0:
		tr.Status = authenticationv1.TokenReviewStatus{Error: fmt.Sprintf(
			"[invalid bearer token, token audiences %q is invalid for the target audiences %q]", bound, requested)}
	default:
		u := entry.user
		info := authenticationv1.UserInfo{Username: u.Name, UID: u.UID, Groups: u.Groups}
		if len(u.Extra) > 0 {
			info.Extra = make(map[string]authenticationv1.ExtraValue, len(u.Extra))
			for k, v := range u.Extra {
				info.Extra[k] = v
			}
		}
		tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: info, Audiences: granted}
	}
	writeJSON(w, http.StatusCreated, &tr)
}

func (s *Server) accessReview(w http.ResponseWriter, r *http.Request, body []byte) {
	var sar authorizationv1.SubjectAccessReview
	if err := json.Unmarshal(body, &sar); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "clustertest: decode SubjectAccessReview: "+err.Error())
		return
	}
	s.mu.Lock()
	s.accessReviews = append(s.accessReviews, sar)
	namespace := s.Namespace
	userAllowed := s.allowedUsers[sar.Spec.User]
	denied := s.deniedUsers[sar.Spec.User]
	var allowedGroup string
	for _, g := range sar.Spec.Groups {
		if s.allowedGroups[g] {
			allowedGroup = g
			break
		}
	}
	allowedOn := s.allowedOnBy(&sar.Spec)
	evalError := s.evalError
	s.mu.Unlock()
	if !s.held(w, r, true) {
		return
	}
	if msg := invalidAccessReview(&sar.Spec); msg != "" {
		writeStatus(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid,
			`SubjectAccessReview.authorization.k8s.io "" is invalid: `+msg)
		return
	}
	sar.APIVersion, sar.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
	ra := sar.Spec.ResourceAttributes
	pull := ra != nil && ra.Namespace == namespace && ra.Verb == "get" && ra.Group == "image.openshift.io" &&
		ra.Resource == "imagestreams" && ra.Subresource == "layers"
	binding := fmt.Sprintf(`RBAC: allowed by RoleBinding "image-pullers/%s" of ClusterRole "system:image-puller"`, namespace)
	switch {
	case denied:
		sar.Status = authorizationv1.SubjectAccessReviewStatus{Denied: true,
			Reason: fmt.Sprintf("clustertest: user %q is denied", sar.Spec.User)}
	case pull && userAllowed:
		sar.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: fmt.Sprintf("%s to User %q", binding, sar.Spec.User)}
	case pull && allowedGroup != "":
		sar.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: fmt.Sprintf("%s to Group %q", binding, allowedGroup)}
	case allowedOn != "":
		sar.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true,
			Reason: fmt.Sprintf(`RBAC: allowed by RoleBinding "image-pullers/%s" to %s`, ra.Namespace, allowedOn)}
	case evalError != "":
		// An authorizer failed, and none allowed: RBAC answers no opinion
		// plus the error.
		sar.Status = authorizationv1.SubjectAccessReviewStatus{EvaluationError: evalError}
	default:
		// RBAC has no opinion: not allowed, not denied, no reason.
		sar.Status = authorizationv1.SubjectAccessReviewStatus{}
	}
	writeJSON(w, http.StatusCreated, &sar)
}

// invalidAccessReview reports what the API server's validation would reject
// in spec, or "".
func invalidAccessReview(spec *authorizationv1.SubjectAccessReviewSpec) string {
	switch {
	case (spec.ResourceAttributes == nil) == (spec.NonResourceAttributes == nil):
		return "spec.resourceAttributes: Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified"
	case spec.User == "" && len(spec.Groups) == 0:
		return `spec.user: Invalid value: "": at least one of user or group must be specified`
	}
	return ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	writeJSON(w, code, &metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure, Message: msg, Reason: reason, Code: int32(code),
	})
}

// hijackAndClose drops the connection without an answer.
func hijackAndClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(interface{ NetConn() net.Conn }); ok {
				conn = tc.NetConn() // no TLS close_notify: a bare reset
			}
			if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}
