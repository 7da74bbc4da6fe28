package quaytest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// manifest is a stored manifest or index.
type manifest struct {
	mediaType string
	body      []byte
}

// tagPattern is quay's VALID_TAG_PATTERN (util/names.py).
var tagPattern = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)

// digestPattern is quay's DIGEST_PATTERN (digest/digest_tools.py), narrowed
// to the sha256 digests this server stores.
var digestPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (s *Server) blobPath(hex string) string { return filepath.Join(s.dir, "blobs", hex) }

// PutBlob stores b as a blob and returns its digest.
func (s *Server) PutBlob(b []byte) (v1.Hash, error) {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	if err := os.WriteFile(s.blobPath(h.Hex), b, 0o600); err != nil {
		return v1.Hash{}, fmt.Errorf("quaytest: store blob: %w", err)
	}
	return h, nil
}

// PushBlob stores size pseudo-random bytes as one blob, streamed to disk
// without holding them in memory, and returns its digest.
func (s *Server) PushBlob(ctx context.Context, size int64) (v1.Hash, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "blobs"), "upload-")
	if err != nil {
		return v1.Hash{}, fmt.Errorf("quaytest: store blob: %w", err)
	}
	defer f.Close()
	var seed [32]byte
	copy(seed[:], strconv.FormatInt(size, 10))
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8(seed), size)); err != nil {
		return v1.Hash{}, fmt.Errorf("quaytest: store blob: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return v1.Hash{}, err
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if err := f.Close(); err != nil {
		return v1.Hash{}, fmt.Errorf("quaytest: store blob: %w", err)
	}
	if err := os.Rename(f.Name(), s.blobPath(d.Hex)); err != nil {
		return v1.Hash{}, fmt.Errorf("quaytest: store blob: %w", err)
	}
	return d, nil
}

// PutManifest stores a manifest of mediaType and, if tag is not empty,
// points tag at it; it returns the manifest's digest.
func (s *Server) PutManifest(tag, mediaType string, body []byte) (v1.Hash, error) {
	if tag != "" && !tagPattern.MatchString(tag) {
		return v1.Hash{}, fmt.Errorf("quaytest: invalid tag %q", tag)
	}
	sum := sha256.Sum256(body)
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.manifests[d.String()] = manifest{mediaType: mediaType, body: append([]byte(nil), body...)}
	if tag != "" {
		s.tags[tag] = d.String()
	}
	return d, nil
}

// Tag points tag at a stored manifest.
func (s *Server) Tag(tag string, digest v1.Hash) error {
	if !tagPattern.MatchString(tag) {
		return fmt.Errorf("quaytest: invalid tag %q", tag)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.manifests[digest.String()]; !ok {
		return fmt.Errorf("quaytest: tag %s: no manifest %s", tag, digest)
	}
	s.tags[tag] = digest.String()
	return nil
}

// TagDigest is the digest of the manifest tag points at.
func (s *Server) TagDigest(tag string) (v1.Hash, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.tags[tag]
	if !ok {
		return v1.Hash{}, false
	}
	h, err := v1.NewHash(d)
	return h, err == nil
}

// PushImage stores img's layers, config and manifest and tags it.
func (s *Server) PushImage(tag string, img v1.Image) error {
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("quaytest: push image: %w", err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("quaytest: push image: %w", err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("quaytest: push image: %w", err)
		}
		if _, err := s.PutBlob(b); err != nil {
			return err
		}
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return fmt.Errorf("quaytest: push image: %w", err)
	}
	if _, err := s.PutBlob(cfg); err != nil {
		return err
	}
	return s.putRaw(tag, img)
}

type rawManifest interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
}

func (s *Server) putRaw(tag string, m rawManifest) error {
	raw, err := m.RawManifest()
	if err != nil {
		return fmt.Errorf("quaytest: manifest: %w", err)
	}
	mt, err := m.MediaType()
	if err != nil {
		return fmt.Errorf("quaytest: manifest: %w", err)
	}
	_, err = s.PutManifest(tag, string(mt), raw)
	return err
}

// PushIndex stores every image of idx (untagged) and the index under tag.
func (s *Server) PushIndex(tag string, idx v1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("quaytest: push index: %w", err)
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return fmt.Errorf("quaytest: push index: %w", err)
		}
		if err := s.PushImage("", img); err != nil {
			return err
		}
	}
	return s.putRaw(tag, idx)
}

// PushRandomImage stores an image of layers random gzip layers of about
// layerSize bytes each under tag, as registrytest.Registry does.
func (s *Server) PushRandomImage(_ context.Context, tag string, layers int, layerSize int64) (v1.Image, error) {
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		return nil, fmt.Errorf("quaytest: random image: %w", err)
	}
	return img, s.PushImage(tag, img)
}

// PushRandomIndex stores a multi-arch OCI index (linux/amd64 and
// linux/arm64 images) under tag.
func (s *Server) PushRandomIndex(_ context.Context, tag string) (v1.ImageIndex, error) {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(32<<10, 2)
		if err != nil {
			return nil, fmt.Errorf("quaytest: random image: %w", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	return idx, s.PushIndex(tag, idx)
}
