package clusterroute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/qci-appci/qci-appci/function/clusterconfig"
)

// discoveryPath is where an API server publishes its service account
// issuer (ServiceAccountIssuerDiscovery); every service account may read it
// (system:service-account-issuer-discovery).
const discoveryPath = "/.well-known/openid-configuration"

// discoverIssuer asks the cluster of c, with the function's own credentials
// there, which issuer its service account tokens name.
func discoverIssuer(ctx context.Context, c clusterconfig.Cluster) (string, error) {
	var cfg *rest.Config
	var err error
	if c.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return "", fmt.Errorf("client config: %w", err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "qci-appci"
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", fmt.Errorf("client: %w", err)
	}
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return "", fmt.Errorf("server URL: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base.String(), "/")+discoveryPath, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", discoveryPath, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", discoveryPath, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s (list the cluster's issuers in QCI_CLUSTERS_FILE if it does not publish them)", discoveryPath, resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", fmt.Errorf("GET %s: %w", discoveryPath, err)
	}
	if doc.Issuer == "" {
		return "", errors.New("GET " + discoveryPath + ": no issuer")
	}
	return doc.Issuer, nil
}
