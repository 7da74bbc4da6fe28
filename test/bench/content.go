package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// content is what the upstream serves: a big blob with a manifest naming
// it (the throughput rows) and a 3-layer image (the pull rows), each
// manifest under its tag and under its digest.
type content struct {
	blob, blobManifest string // digests
	blobSize           int64
	pullManifest       string // digest of the 3-layer image's manifest
	pullBlobs          []string
	// digests maps each manifest path under /v2/ to its digest, for the
	// upstream's Docker-Content-Digest header.
	digests map[string]string
}

const (
	blobTag = "latest"
	pullTag = "pull"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// writeContent writes the registry's files under dir/www, where nginx
// serves them.
func writeContent(dir string, size int64) (*content, error) {
	blobs := filepath.Join(dir, "www", "v2", repo, "blobs")
	manifests := filepath.Join(dir, "www", "v2", repo, "manifests")
	for _, d := range []string{blobs, manifests} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c := &content{blobSize: size, digests: map[string]string{}}
	tmp := filepath.Join(blobs, "tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{1}), size)); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	c.blob = "sha256:" + hex.EncodeToString(h.Sum(nil))
	if err := os.Rename(tmp, filepath.Join(blobs, c.blob)); err != nil {
		return nil, err
	}
	m := manifest(descriptor(configType, c.blob, size), descriptor(layerType, c.blob, size))
	if c.blobManifest, err = c.writeManifest(manifests, blobTag, m); err != nil {
		return nil, err
	}

	// The pull image: three random layers of 1, 2 and 4 MiB and a config
	// naming them; the layers' bytes are not a tarball, which a pull that
	// only checks digests (as go-containerregistry's does) never notices.
	rng := rand.NewChaCha8([32]byte{2})
	var layers []string
	var diffIDs []string
	for i := range 3 {
		b := make([]byte, 1<<20<<i)
		_, _ = rng.Read(b)
		d := sha(b)
		if err := os.WriteFile(filepath.Join(blobs, d), b, 0o644); err != nil {
			return nil, err
		}
		c.pullBlobs = append(c.pullBlobs, d)
		layers = append(layers, descriptor(layerType, d, int64(len(b))))
		diffIDs = append(diffIDs, fmt.Sprintf("%q", d))
	}
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[%s]}}`, strings.Join(diffIDs, ",")))
	cd := sha(config)
	if err := os.WriteFile(filepath.Join(blobs, cd), config, 0o644); err != nil {
		return nil, err
	}
	c.pullBlobs = append([]string{cd}, c.pullBlobs...)
	if c.pullManifest, err = c.writeManifest(manifests, pullTag, manifest(descriptor(configType, cd, int64(len(config))), layers...)); err != nil {
		return nil, err
	}
	return c, nil
}

const (
	manifestType = "application/vnd.oci.image.manifest.v1+json"
	configType   = "application/vnd.oci.image.config.v1+json"
	layerType    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

func descriptor(mediaType, digest string, size int64) string {
	return fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, mediaType, digest, size)
}

func manifest(config string, layers ...string) []byte {
	return []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":%s,"layers":[%s]}`, manifestType, config, strings.Join(layers, ",")))
}

// writeManifest writes m under its tag and its digest.
func (c *content) writeManifest(dir, tag string, m []byte) (string, error) {
	d := sha(m)
	for _, ref := range []string{tag, d} {
		if err := os.WriteFile(filepath.Join(dir, ref), m, 0o644); err != nil {
			return "", err
		}
		c.digests["/v2/"+repo+"/manifests/"+ref] = d
	}
	return d, nil
}
