package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/qci-appci/qci-appci/test/clienttools"
)

// TestImageStreamTagListPaging: the image stream ci/ci-operator has 150
// tags in the mirror, among tags of streams that sort just before and
// just after its prefix. Its tag list, through skopeo list-tags and
// go-containerregistry's remote.List (HTTP/1.1 and h2c), is exactly those
// 150 tags without the prefix, over more than one page of the upstream's;
// behind quay, the upstream is asked from the stream's prefix on, never
// from the start of the mirror.
func TestImageStreamTagListPaging(t *testing.T) {
	skopeo := clienttools.Need(t, "skopeo", "skopeo")
	eachUpstream(t, func(t *testing.T, w *world) {
		w.cluster.AllowOn("alice", "ci", "ci-operator")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := w.up.PushRandomImage(ctx, tag, 1, 1024); err != nil { // ci_ci-operator_latest
			t.Fatal(err)
		}
		want := []string{"latest"}
		var mirror []string
		for i := range 149 {
			want = append(want, fmt.Sprintf("v%03d", i))
			mirror = append(mirror, fmt.Sprintf("ci_ci-operator_v%03d", i))
		}
		// Neighbours: "-" sorts before "_", letters after it.
		mirror = append(mirror, "ci_ci-operator-extra_latest", "ci_ci-operatorx_latest", "aaa_first_latest", "zzz_last_latest")
		if err := w.up.tag(ctx, tag, mirror); err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		stream := w.containersHost() + "/ci/ci-operator"

		w.up.ResetRequests()
		out, err := clienttools.Run(ctx, skopeo, slices.Concat([]string{"list-tags", "--creds", "alice:" + aliceToken}, w.tlsArgs(""),
			[]string{"docker://" + stream})...)
		if err != nil {
			t.Fatalf("skopeo list-tags: %v\n%s", err, out)
		}
		var listed struct{ Tags []string }
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &listed); err != nil {
			t.Fatalf("skopeo list-tags: %v\n%s", err, out)
		}
		slices.Sort(listed.Tags)
		if !slices.Equal(listed.Tags, want) {
			t.Errorf("skopeo list-tags ci/ci-operator: %d tags %v…, want %d", len(listed.Tags), listed.Tags[:min(3, len(listed.Tags))], len(want))
		}
		w.assertStreamTagPages(t)
		w.assertUpstreamSawOnlyRobotTokens()

		eachProtocol(t, w, func(t *testing.T, c *http.Client) {
			w.up.ResetRequests()
			ref, _ := name.NewRepository(w.proxy.Host+"/ci/ci-operator", name.Insecure)
			tags, err := remote.List(ref, remote.WithTransport(c.Transport),
				remote.WithAuth(&authn.Basic{Username: "alice", Password: aliceToken}))
			slices.Sort(tags)
			if err != nil || !slices.Equal(tags, want) {
				t.Errorf("remote.List ci/ci-operator: %d tags, want %d: %v", len(tags), len(want), err)
			}
			w.assertStreamTagPages(t)
		})
	})
}

// assertStreamTagPages checks, behind quay, that every tags/list the
// upstream answered started at the ci/ci-operator prefix (no scan of the
// mirror from its start) and that there was more than one.
func (w *world) assertStreamTagPages(t *testing.T) {
	t.Helper()
	if w.quay == nil {
		return
	}
	pages := 0
	for _, r := range w.up.requests() {
		if r.Path != "/v2/"+repo+"/tags/list" || r.Status != http.StatusOK {
			continue
		}
		pages++
		q, _ := url.ParseQuery(r.RawQuery)
		if !strings.HasPrefix(q.Get("last"), "ci_ci-operator_") {
			t.Errorf("upstream tags/list asked with last=%q, not from the stream's prefix", q.Get("last"))
		}
	}
	if pages < 2 {
		t.Errorf("the upstream answered %d tags/list pages, want 2 or more (150 tags, 100 a page)", pages)
	}
}
