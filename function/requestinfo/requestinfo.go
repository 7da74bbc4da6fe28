// Package requestinfo carries what the handlers learn about a request (who
// made it, what the upstream answered) to the access log written around
// them, through the request's context.
package requestinfo

import "context"

// Info is filled by the handlers and read by the access log.
type Info struct {
	// User is the token's subject or the login's user.
	User string
	// Cluster names the cluster that reviewed the login or issued the
	// token's login, when the function knows several.
	Cluster string
	// UpstreamStatus is the upstream's status code; 0 when nothing was sent.
	UpstreamStatus int
}

type key struct{}

// With returns a context that carries a new Info, and that Info.
func With(ctx context.Context) (context.Context, *Info) {
	info := &Info{}
	return context.WithValue(ctx, key{}, info), info
}

// From returns the Info in ctx, or nil. Setting fields of a nil Info is not
// allowed, so handlers use the setters below.
func From(ctx context.Context) *Info {
	info, _ := ctx.Value(key{}).(*Info)
	return info
}

// SetUser records the user, if ctx carries an Info.
func SetUser(ctx context.Context, user string) {
	if info := From(ctx); info != nil {
		info.User = user
	}
}

// SetUpstreamStatus records the upstream status, if ctx carries an Info.
func SetUpstreamStatus(ctx context.Context, status int) {
	if info := From(ctx); info != nil {
		info.UpstreamStatus = status
	}
}

// SetCluster records the cluster, if ctx carries an Info.
func SetCluster(ctx context.Context, cluster string) {
	if info := From(ctx); info != nil {
		info.Cluster = cluster
	}
}
