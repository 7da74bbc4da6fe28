// Command localbase serves a base image saved as a tarball on a registry
// bound to loopback and runs a command with KO_DEFAULTBASEIMAGE naming it,
// so that ko builds the image on a machine with no registry access:
//
//	localbase -tar distroless-static.tar -- ko build --push=false --tarball=image.tar ./cmd/qci-appci
//
// The tarball is what `docker save`, `crane pull` or `skopeo copy …
// docker-archive:FILE` write. The registry lives as long as the command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	tar := flag.String("tar", "", "the base image, saved as a docker-archive tarball")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: localbase -tar BASE.tar -- COMMAND [ARG]...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *tar == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	code, err := run(*tar, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "localbase:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

// run serves the image of tar on loopback and runs args with
// KO_DEFAULTBASEIMAGE set to it; it returns the command's exit code.
func run(tar string, args []string) (int, error) {
	img, err := tarball.ImageFromPath(tar, nil)
	if err != nil {
		return 0, fmt.Errorf("read the base image %s: %w", tar, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen on loopback: %w", err)
	}
	srv := &http.Server{
		Handler:           registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	ref, err := name.ParseReference(ln.Addr().String()+"/base:latest", name.Insecure)
	if err != nil {
		return 0, fmt.Errorf("base reference: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return 0, fmt.Errorf("serve the base image on %s: %w", ln.Addr(), err)
	}
	digest, err := img.Digest()
	if err != nil {
		return 0, fmt.Errorf("base image digest: %w", err)
	}
	base := ref.Context().Digest(digest.String()).String()
	fmt.Fprintln(os.Stderr, "localbase: serving", tar, "as", base)

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KO_DEFAULTBASEIMAGE="+base)
	err = cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	if err != nil {
		return 0, fmt.Errorf("run %s: %w", args[0], err)
	}
	return 0, nil
}
