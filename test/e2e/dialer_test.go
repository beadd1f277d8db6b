//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kpf-dev/kpf/internal/testsupport"
	"github.com/kpf-dev/kpf/pkg/dialer"
)

func newDialer(t *testing.T, s *suite, namespaces ...string) *dialer.Dialer {
	t.Helper()
	d, err := dialer.New(dialer.Options{Kubeconfig: s.primary.Kubeconfig, DefaultContext: "e2e", Namespaces: namespaces})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// The Dialer reaches a service by name from an http.Client, survives the
// serving pod being deleted between two requests, and leaves nothing
// running after Close.
//
// The two pods are bare, so that nothing replaces the deleted one: a
// Deployment's replacement would be given the freed backend, and a request
// reaching it could not be told from one reaching the deleted pod.
func TestE2EDialerSurvivesPodDeletion(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "dialer")
	one, two := startHTTPBackend(t, "one", 200), startHTTPBackend(t, "two", 200)
	deployBareEcho(t, s.primary, ns, one, two)
	baseline := goleak.IgnoreCurrent()

	d := newDialer(t, s)
	transport := &http.Transport{DialContext: d.DialContext}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	url := fmt.Sprintf("http://echo.%s.svc.cluster.local:80/", ns)
	first, err := get(client, url)
	if err != nil {
		t.Fatal(err)
	}
	victim, survivor := "echo-one", "hello from two"
	if first == "hello from two" {
		victim, survivor = "echo-two", "hello from one"
	}
	// kubectl delete returns once the pod is gone. A pod that is only
	// terminating may still serve the transport's kept-alive connection,
	// as it would in a real cluster, so the check waits for the deletion.
	// The service's EndpointSlice may still list the pod: the Dialer must
	// then move on to the other one by itself.
	kubectlE2E(t, s, "-n", ns, "delete", "pod", victim)
	second, err := get(client, url)
	if err != nil {
		t.Fatalf("second request after deleting the serving pod: %v", err)
	}
	if second != survivor {
		t.Errorf("second request, after deleting %s: %q, want %q", victim, second, survivor)
	}
	t.Logf("first request: %q, after deleting its pod: %q", first, second)
	if _, err := d.DialContext(context.Background(), "tcp", "example.com:443"); err == nil {
		t.Error("a non-cluster address was dialled with no Fallback")
	}
	transport.CloseIdleConnections()
	d.Close()
	if _, err := d.DialContext(context.Background(), "tcp", "echo."+ns+".svc:80"); err == nil {
		t.Error("dial after Close succeeded")
	}
	verifyNoLeaks(t, baseline)
}

// startPrometheus runs Debian's prometheus on loopback, scraping itself
// every second, and returns its port once it has a sample of up.
func startPrometheus(t *testing.T) int {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("prometheus is not installed (.ci/run installs Debian's prometheus package)")
		}
		t.Skip("prometheus not installed: apt-get install prometheus")
	}
	dir := t.TempDir()
	port := freePort(t)
	cfg := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: prometheus\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n", port)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), fs.FileMode(0o600)); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	logs := &testsupport.Buffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitUntil(t, 60*time.Second, "prometheus to have a sample of up", func(context.Context) (bool, error) {
		body, err := get(http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=up", port))
		return err == nil && strings.Contains(body, `"value"`), nil
	})
	return port
}

// promSeries returns the status and the label sets of a PromQL answer.
func promSeries(t *testing.T, body string) (string, []string) {
	t.Helper()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("PromQL answer: %v\n%s", err, body)
	}
	var series []string
	for _, res := range r.Data.Result {
		var kv []string
		for k, v := range res.Metric {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		series = append(series, strings.Join(kv, ","))
	}
	slices.Sort(series)
	return r.Status, series
}

// The article's example for real: Prometheus behind the Service
// thanos-query in namespace monitoring, queried with PromQL through a kpf
// up local port, the Go Dialer in an http.Transport, kpf up's HTTP proxy
// (curl --proxy) and its SOCKS5 proxy (curl --socks5-hostname): all give
// the same series. The proxies refuse other namespaces and the internet.
func TestE2EPromQLThroughKpf(t *testing.T) {
	s := needSuite(t)
	promPort := startPrometheus(t)
	ns := exactNamespace(t, s.primary, "monitoring")
	b := backend{name: "prometheus", port: promPort}
	createDeployment(t, s.primary, ns, "thanos-query", 1, b)
	_, err := s.primary.client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "thanos-query", Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "thanos-query"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 9090, TargetPort: intstr.FromString("echo")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, s.primary, ns, "thanos-query", 1)
	const query = "/api/v1/query?query=up"

	local, socksPort, httpPort := freePort(t), freePort(t), freePort(t)
	startKpf(t, s, writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: thanos
    context: e2e
    namespace: monitoring
    service: thanos-query
    ports: ["%d:9090"]
proxy:
  socks5: 127.0.0.1:%d
  http: 127.0.0.1:%d
`, local, socksPort, httpPort)))
	viaPort, err := get(http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d%s", local, query))
	if err != nil {
		t.Fatal(err)
	}

	d := newDialer(t, s, "monitoring")
	defer d.Close()
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 30 * time.Second}
	viaDialer, err := get(client, "http://thanos-query.monitoring:9090"+query)
	if err != nil {
		t.Fatal(err)
	}

	curl := func(args ...string) (string, int) {
		cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "30"}, args...)...)
		out, err := cmd.Output()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return string(out), code
	}
	viaHTTPProxy, code := curl("--proxy", fmt.Sprintf("http://127.0.0.1:%d", httpPort), "http://thanos-query.monitoring:9090"+query)
	if code != 0 {
		t.Fatalf("curl --proxy: exit %d: %s", code, viaHTTPProxy)
	}
	viaSOCKS, code := curl("--socks5-hostname", fmt.Sprintf("127.0.0.1:%d", socksPort), "http://thanos-query.monitoring.svc.cluster.local:9090"+query)
	if code != 0 {
		t.Fatalf("curl --socks5-hostname: exit %d: %s", code, viaSOCKS)
	}

	st1, series1 := promSeries(t, viaPort)
	for name, body := range map[string]string{"dialer": viaDialer, "http proxy": viaHTTPProxy, "socks5 proxy": viaSOCKS} {
		st, series := promSeries(t, body)
		if st1 != "success" || st != "success" {
			t.Fatalf("status: local port %q, %s %q", st1, name, st)
		}
		if len(series1) == 0 || !slices.Equal(series1, series) {
			t.Fatalf("series differ: local port %v, %s %v", series1, name, series)
		}
	}
	t.Logf("up through a kpf local port, the Dialer, the HTTP proxy and the SOCKS5 proxy: %v", series1)

	// Names in undeclared namespaces and non-cluster hosts are refused:
	// curl exits 97 when the SOCKS5 proxy refuses the connection.
	for _, url := range []string{"http://thanos-query.default.svc:9090/", "http://example.com/"} {
		if out, code := curl("--socks5-hostname", fmt.Sprintf("127.0.0.1:%d", socksPort), url); code != 97 {
			t.Errorf("SOCKS5 to %s: curl exit %d (%q), want 97 (refused by the proxy)", url, code, out)
		}
	}
	if out, _ := curl("-o", "/dev/null", "-w", "%{http_code}", "--proxy", fmt.Sprintf("http://127.0.0.1:%d", httpPort), "http://example.com/"); out != "403" {
		t.Errorf("HTTP proxy to example.com: status %s, want 403", out)
	}
}

// exactNamespace creates the namespace name (waiting for a previous one of
// that name to finish terminating), deleted when the test ends.
func exactNamespace(t *testing.T, c *cluster, name string) string {
	t.Helper()
	waitUntil(t, 120*time.Second, "namespace "+name+" to be creatable", func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		return err == nil, nil
	})
	t.Cleanup(func() { c.client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	waitUntil(t, 60*time.Second, "default service account in "+name, func(ctx context.Context) (bool, error) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	return name
}
