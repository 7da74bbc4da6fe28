package registrytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func (r *Registry) remoteOptions(ctx context.Context) []remote.Option {
	r.mu.Lock()
	pass := r.password
	r.mu.Unlock()
	return []remote.Option{remote.WithContext(ctx), remote.WithAuth(&authn.Basic{Username: r.opts.Username, Password: pass})}
}

func (r *Registry) tagRef(tag string) (name.Reference, error) {
	return name.ParseReference(r.Host()+"/"+r.opts.Repository+":"+tag, name.Insecure)
}

// PushRandomImage pushes an image of layers random gzip layers of about
// layerSize bytes each under tag, through the registry's own API.
func (r *Registry) PushRandomImage(ctx context.Context, tag string, layers int, layerSize int64) (v1.Image, error) {
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		return nil, fmt.Errorf("registrytest: random image: %w", err)
	}
	ref, err := r.tagRef(tag)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(ref, img, r.remoteOptions(ctx)...); err != nil {
		return nil, fmt.Errorf("registrytest: push %s: %w", ref, err)
	}
	return img, nil
}

// PushRandomIndex pushes a multi-arch index (linux/amd64 and linux/arm64
// images) under tag.
func (r *Registry) PushRandomIndex(ctx context.Context, tag string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(32<<10, 2)
		if err != nil {
			return nil, fmt.Errorf("registrytest: random image: %w", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	ref, err := r.tagRef(tag)
	if err != nil {
		return nil, err
	}
	if err := remote.WriteIndex(ref, idx, r.remoteOptions(ctx)...); err != nil {
		return nil, fmt.Errorf("registrytest: push index %s: %w", ref, err)
	}
	return idx, nil
}

// PushBlob streams size pseudo-random bytes into the repository as one blob
// in a single PATCH (POST, PATCH, PUT) without holding them in memory, and
// returns its digest: PushBlobInChunks with one chunk.
func (r *Registry) PushBlob(ctx context.Context, size int64) (v1.Hash, error) {
	return r.PushBlobInChunks(ctx, size, max(size, 1))
}

func (r *Registry) pushToken(ctx context.Context) (string, error) {
	q := url.Values{"service": {Service}, "scope": {"repository:" + r.opts.Repository + ":pull,push"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.Realm()+"?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	req.SetBasicAuth(r.opts.Username, r.password)
	r.mu.Unlock()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("registrytest: token: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("registrytest: token: %s", resp.Status)
	}
	var t struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&t); err != nil {
		return "", fmt.Errorf("registrytest: token: %w", err)
	}
	return t.Token, nil
}

// randomReader returns fast pseudo-random bytes, seeded from size so that a
// blob's content differs between sizes but a run is repeatable.
func randomReader(size int64) io.Reader {
	var seed [32]byte
	copy(seed[:], strconv.FormatInt(size, 10))
	return rand.NewChaCha8(seed)
}

// PushBlobInChunks is PushBlob as a chunked upload (POST, one PATCH with
// Content-Range per chunk bytes, PUT): each PATCH gets a storage writer of
// its own, whose buffer the inmemory driver grows by copying it whole on
// every write, so a big blob in one PATCH costs time quadratic in its size.
// The blob's content is PushBlob's for the same size.
func (r *Registry) PushBlobInChunks(ctx context.Context, size, chunk int64) (v1.Hash, error) {
	tok, err := r.pushToken(ctx)
	if err != nil {
		return v1.Hash{}, err
	}
	do := func(method, u string, body io.Reader, start, length int64) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		if body != nil {
			req.ContentLength = length
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", start, start+length-1))
		}
		return http.DefaultClient.Do(req)
	}
	next := func(resp *http.Response, want int, what string) (*url.URL, error) {
		resp.Body.Close()
		if resp.StatusCode != want {
			return nil, fmt.Errorf("registrytest: %s: %s", what, resp.Status)
		}
		loc, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			return nil, fmt.Errorf("registrytest: %s location: %w", what, err)
		}
		return loc, nil
	}
	resp, err := do(http.MethodPost, r.URL()+"/v2/"+r.opts.Repository+"/blobs/uploads/", nil, 0, 0)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("registrytest: start upload: %w", err)
	}
	loc, err := next(resp, http.StatusAccepted, "start upload")
	if err != nil {
		return v1.Hash{}, err
	}
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(randomReader(size), size), h)
	for start := int64(0); start < size; start += chunk {
		n := min(chunk, size-start)
		resp, err := do(http.MethodPatch, loc.String(), io.LimitReader(src, n), start, n)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("registrytest: upload: %w", err)
		}
		if loc, err = next(resp, http.StatusAccepted, "upload"); err != nil {
			return v1.Hash{}, err
		}
	}
	digest := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	q := loc.Query()
	q.Set("digest", digest.String())
	loc.RawQuery = q.Encode()
	resp, err = do(http.MethodPut, loc.String(), nil, 0, 0)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("registrytest: finish upload: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return v1.Hash{}, fmt.Errorf("registrytest: finish upload: %s", resp.Status)
	}
	return digest, nil
}
