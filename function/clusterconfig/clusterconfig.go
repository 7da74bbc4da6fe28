// Package clusterconfig decodes and validates the file named by
// QCI_CLUSTERS_FILE: the clusters whose tokens may log in, how to reach
// each, which issuers' tokens it reviews, whether it takes opaque tokens,
// and how it decides who may pull. It reads the file and nothing else: no
// cluster is contacted.
package clusterconfig

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// DefaultNamespace is the authorization namespace of a cluster whose entry
// names none, as QCI_AUTHZ_NAMESPACE's default.
const DefaultNamespace = "ocp"

// File is the whole clusters file.
type File struct {
	// Clusters are the clusters whose tokens may log in.
	Clusters []Cluster `json:"clusters"`
}

// Cluster is one cluster's entry.
type Cluster struct {
	// Name names the cluster in logs, access lines and refresh tokens: a
	// DNS label (lowercase letters, digits and '-'), unique in the file.
	Name string `json:"name"`
	// Kubeconfig is the path of a kubeconfig file whose current context
	// reaches the cluster with the function's own credentials there.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// InCluster reaches the cluster the function runs in, with its pod's
	// service account; exclusive with Kubeconfig.
	InCluster bool `json:"inCluster,omitempty"`
	// Audiences are the TokenReview spec.audiences; empty: the API
	// server's default audience.
	Audiences []string `json:"audiences,omitempty"`
	// Issuers are the iss claims of the service account tokens the cluster
	// signs. Empty: found from the cluster's
	// /.well-known/openid-configuration the first time a token of an
	// unknown issuer arrives.
	Issuers []string `json:"issuers,omitempty"`
	// OpaqueTokens sends tokens that are not JWTs (OpenShift's sha256~…
	// user tokens) to this cluster; at most one cluster may.
	OpaqueTokens bool `json:"opaqueTokens,omitempty"`
	// Authorization says who of the cluster's users may pull.
	Authorization Authorization `json:"authorization"`
}

// Authorization is one of three ways to decide who may pull: a namespace
// review at login (Namespace), a review per image stream (ImageStreams),
// or a list (Allow). None set means a namespace review in
// DefaultNamespace.
type Authorization struct {
	// Namespace: a SubjectAccessReview for get on imagestreams/layers
	// (image.openshift.io) in this namespace at login, which then grants
	// every image stream. With ImageStreams, the namespace of the review
	// for the upstream repository itself (QCI_FLAT_REPOSITORY), as
	// QCI_AUTHZ_NAMESPACE is for a single cluster.
	Namespace string `json:"namespace,omitempty"`
	// ImageStreams reviews each requested image stream <ns>/<name> at the
	// cluster (get on imagestreams/layers, name <name>, in namespace
	// <ns>), as a single cluster's users are; the login itself needs only
	// a token the cluster authenticates. Exclusive with Allow.
	ImageStreams bool `json:"imageStreams,omitempty"`
	// Allow lets the listed service accounts pull without any
	// SubjectAccessReview, and nobody else.
	Allow *Allow `json:"allow,omitempty"`
}

// Allow lists the service accounts that may pull outright.
type Allow struct {
	// ServiceAccounts are "namespace/name".
	ServiceAccounts []string `json:"serviceAccounts,omitempty"`
	// Namespaces let every service account of each pull.
	Namespaces []string `json:"namespaces,omitempty"`
}

// Error lists every problem of a clusters file.
type Error struct{ Problems []string }

// Error joins the problems into one message.
func (e *Error) Error() string { return "clusters file: " + strings.Join(e.Problems, "; ") }

// Load reads, decodes and validates the clusters file at path, and checks
// that every kubeconfig it names exists. A problem is reported as *Error.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Problems: []string{err.Error()}}
	}
	f, err := Parse(data)
	var problems []string
	var perr *Error
	if errors.As(err, &perr) {
		problems = perr.Problems
	} else if err != nil {
		return nil, err
	}
	if f != nil {
		for i, c := range f.Clusters {
			if c.Kubeconfig == "" {
				continue
			}
			if _, err := os.Stat(c.Kubeconfig); err != nil {
				problems = append(problems, fmt.Sprintf("%s: kubeconfig: %v", label(i, c), err))
			}
		}
	}
	if len(problems) > 0 {
		return nil, &Error{Problems: problems}
	}
	return f, nil
}

// Parse decodes data strictly (an unknown or repeated key is an error),
// fills in the default authorization, and validates the result without
// touching the file system. A problem is reported as *Error, listing all.
func Parse(data []byte) (*File, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, &Error{Problems: []string{"not a valid clusters file: " + err.Error()}}
	}
	for i := range f.Clusters {
		a := &f.Clusters[i].Authorization
		if a.Namespace == "" && a.Allow == nil {
			a.Namespace = DefaultNamespace
		}
	}
	if problems := f.validate(); len(problems) > 0 {
		return &f, &Error{Problems: problems}
	}
	return &f, nil
}

// label names cluster i in a problem: its 1-based position and name.
func label(i int, c Cluster) string {
	if c.Name == "" {
		return fmt.Sprintf("cluster %d", i+1)
	}
	return fmt.Sprintf("cluster %d (%q)", i+1, c.Name)
}

func (f *File) validate() []string {
	var problems []string
	if len(f.Clusters) == 0 {
		return []string{"lists no clusters: set clusters: [{name: …, kubeconfig: …}]"}
	}
	names := map[string]int{}
	issuers := map[string]int{}
	var inCluster, opaque []string
	for i, c := range f.Clusters {
		bad := func(format string, args ...any) {
			problems = append(problems, label(i, c)+": "+fmt.Sprintf(format, args...))
		}
		switch {
		case c.Name == "":
			bad("name is required")
		case len(validation.IsDNS1123Label(c.Name)) > 0:
			bad("name %q must be a DNS label: lowercase letters, digits and '-', at most 63", c.Name)
		default:
			if j, dup := names[c.Name]; dup {
				bad("name %q is also cluster %d's", c.Name, j+1)
			} else {
				names[c.Name] = i
			}
		}
		switch {
		case c.Kubeconfig != "" && c.InCluster:
			bad("set kubeconfig or inCluster: true, not both")
		case c.Kubeconfig == "" && !c.InCluster:
			bad("set kubeconfig (a file path) or inCluster: true")
		case c.InCluster:
			inCluster = append(inCluster, label(i, c))
		}
		for _, a := range c.Audiences {
			if strings.TrimSpace(a) == "" {
				bad("audiences holds an empty audience")
			}
		}
		for _, iss := range c.Issuers {
			if strings.TrimSpace(iss) == "" {
				bad("issuers holds an empty issuer")
				continue
			}
			if j, dup := issuers[iss]; dup {
				if j == i {
					bad("issuer %q is listed twice", iss)
				} else {
					bad("issuer %q is also cluster %d's: a token must name one cluster", iss, j+1)
				}
				continue
			}
			issuers[iss] = i
		}
		if c.OpaqueTokens {
			opaque = append(opaque, label(i, c))
		}
		problems = append(problems, c.Authorization.validate(label(i, c))...)
	}
	if len(inCluster) > 1 {
		problems = append(problems, "only one cluster can be the one the function runs in (inCluster: true): "+strings.Join(inCluster, ", "))
	}
	if len(opaque) > 1 {
		problems = append(problems, "at most one cluster may accept opaque tokens (opaqueTokens: true): "+strings.Join(opaque, ", "))
	}
	return problems
}

func (a Authorization) validate(label string) []string {
	var problems []string
	bad := func(format string, args ...any) {
		problems = append(problems, label+": authorization: "+fmt.Sprintf(format, args...))
	}
	if a.Namespace != "" && a.Allow != nil {
		bad("set namespace (a SubjectAccessReview) or allow (a list), not both")
	}
	if a.ImageStreams && a.Allow != nil {
		bad("set imageStreams: true (a SubjectAccessReview per image stream) or allow (a list), not both")
	}
	if a.Namespace != "" && len(validation.IsDNS1123Label(a.Namespace)) > 0 {
		bad("namespace %q is not a namespace name", a.Namespace)
	}
	if a.Allow == nil {
		return problems
	}
	if len(a.Allow.ServiceAccounts) == 0 && len(a.Allow.Namespaces) == 0 {
		bad("allow lists no service accounts and no namespaces: nobody could pull")
	}
	for _, sa := range a.Allow.ServiceAccounts {
		ns, name, ok := strings.Cut(sa, "/")
		if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			bad("allow.serviceAccounts: %q is not namespace/name", sa)
		}
	}
	for _, ns := range a.Allow.Namespaces {
		if len(validation.IsDNS1123Label(ns)) > 0 {
			bad("allow.namespaces: %q is not a namespace name", ns)
		}
	}
	return problems
}

// Allowed reports whether the service account user (as a TokenReview
// names it, system:serviceaccount:<namespace>:<name>) is on the list.
func (a *Allow) Allowed(user string) bool {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return false
	}
	ns, name, ok := strings.Cut(rest, ":")
	if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
		return false
	}
	for _, n := range a.Namespaces {
		if n == ns {
			return true
		}
	}
	for _, sa := range a.ServiceAccounts {
		if sa == ns+"/"+name {
			return true
		}
	}
	return false
}
