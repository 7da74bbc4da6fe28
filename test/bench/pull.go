package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// pull is a whole go-containerregistry pull of ref over tr with the robot's
// credentials: ping, token, manifest, config, every layer read to its end
// (go-containerregistry checks each digest as it reads).
func pull(ref string, tr http.RoundTripper) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	img, err := remote.Image(r, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: robotUser, Password: robotPass}))
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("pull %s: config: %w", ref, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	if len(layers) != 3 {
		return fmt.Errorf("pull %s: %d layers, want 3", ref, len(layers))
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("pull %s: layer: %w", ref, err)
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("pull %s: layer: %w", ref, err)
		}
	}
	return nil
}

// logLines returns the lines appended to path since it had n lines, and
// its line count now.
func logLines(path string, n int) ([]string, int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) == 0 {
		lines = nil
	}
	if n > len(lines) {
		n = len(lines)
	}
	return lines[n:], len(lines)
}
