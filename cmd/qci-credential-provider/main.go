// Command qci-credential-provider is a kubelet image credential provider
// (credentialprovider.kubelet.k8s.io/v1) for qci-appci: it answers the
// kubelet's CredentialProviderRequest on stdin with the pod's own
// service account token as the password for qci-appci's host, so that pods
// pull without a pull secret. The kubelet must hand it the token
// (tokenAttributes in its CredentialProviderConfig, KEP-4412); see
// knative/examples/build-farm.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	fs := flag.NewFlagSet("qci-credential-provider", flag.ContinueOnError)
	registry := fs.String("registry", "", "host[:port] of qci-appci as images name it, e.g. registry.ci.example.com (required)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("qci-credential-provider", version)
		return
	}
	if err := checkRegistry(*registry); err != nil {
		fmt.Fprintln(os.Stderr, "qci-credential-provider:", err)
		os.Exit(2)
	}
	if err := runPlugin(os.Stdin, os.Stdout, provider{registry: *registry, now: time.Now}); err != nil {
		fmt.Fprintln(os.Stderr, "qci-credential-provider:", err)
		os.Exit(1)
	}
}
