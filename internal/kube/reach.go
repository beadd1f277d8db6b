package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
)

// Reach is what Cluster.Reach measured of an API server.
type Reach struct {
	// First is how long the first request took: connecting, the TLS
	// handshake and one answer.
	First time.Duration
	// RoundTrip is how long a second request took over the same
	// connection: the network's round trip plus the server's time.
	RoundTrip time.Duration
	// Version is the server's gitVersion, "" when it does not show it to
	// a client without credentials.
	Version string
}

// Reach asks the context's API server for /version twice over one
// connection, without credentials: it tells a server that cannot be
// reached, or whose certificate is wrong, from one that rejects the
// credentials (see WhoAmI), and never runs an exec credential plugin. An
// answer of 401 or 403 still means the server was reached. The error is
// explained (see Explain).
func (c *Cluster) Reach(ctx context.Context) (Reach, error) {
	anon := rest.AnonymousClientConfig(c.Config)
	client, err := rest.HTTPClientFor(anon)
	if err != nil {
		return Reach{}, fmt.Errorf("context %q: %w", c.Name, err)
	}
	defer client.CloseIdleConnections()
	u := strings.TrimSuffix(anon.Host, "/") + "/version"
	var r Reach
	for i := range 2 {
		start := time.Now()
		v, err := getVersion(ctx, client, u)
		if err != nil {
			return Reach{}, Explain(err, c.Name, c.Config)
		}
		if i == 0 {
			r.First, r.Version = time.Since(start), v
		} else {
			r.RoundTrip = time.Since(start)
		}
	}
	return r, nil
}

// getVersion GETs u and returns the gitVersion it reports, or "" for a
// 401 or 403.
func getVersion(ctx context.Context, client *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("read /version: %w", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var info version.Info
		if err := json.Unmarshal(body, &info); err != nil {
			return "", fmt.Errorf("/version answered %q, which is not a Kubernetes API server's answer", truncate(string(body), 80))
		}
		return info.GitVersion, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		return "", nil
	default:
		return "", fmt.Errorf("/version answered %s, which is not a Kubernetes API server's answer", resp.Status)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ServerVersion asks the API server for its version with the context's
// credentials.
func (c *Cluster) ServerVersion(ctx context.Context) (string, error) {
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", Explain(err, c.Name, c.Config)
	}
	var info version.Info
	if err := json.Unmarshal(body, &info); err != nil {
		return "", fmt.Errorf("context %q: read /version: %w", c.Name, err)
	}
	return info.GitVersion, nil
}
