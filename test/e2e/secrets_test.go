package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// kpf never logs credentials: with verbose JSON logs through start-up,
// connections, a failing forward, a restart, status and metrics, neither
// the bearer token nor the CA certificate nor an Authorization header
// appears in its output.
func TestE2ELogsCarryNoCredentials(t *testing.T) {
	s := needSuite(t)
	kc, err := clientcmd.LoadFromFile(s.primary.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var token string
	for _, u := range kc.AuthInfos {
		token = u.Token
	}
	var ca []byte
	for _, c := range kc.Clusters {
		ca = c.CertificateAuthorityData
	}
	if len(token) < 16 || len(ca) == 0 {
		t.Fatalf("test cluster kubeconfig has no token or CA (token %d bytes)", len(token))
	}
	ns := newNamespace(t, s.primary, "secrets")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	port, mport := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - name: echo
    service: echo
    ports: ["%d:80"]
  - name: broken
    service: nope
    ports: ["%d:80"]
`, ns, port, freePort(t)))
	p := startKpf(t, s, cfg, "--log-format", "json", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport))
	for range 3 {
		if _, err := greeting(fmt.Sprintf("127.0.0.1:%d", port), 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := runKpf(s, "restart", "-f", cfg, "echo"); err != nil {
		t.Fatalf("restart: %v\n%s", err, out)
	}
	statusOut, _ := runKpf(s, "status", "-f", cfg, "-o", "json")
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", mport))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	time.Sleep(500 * time.Millisecond)

	all := p.stdout.String() + p.stderr.String() + statusOut
	if !strings.Contains(all, `"msg":"connection opened"`) {
		t.Fatalf("verbose JSON logs missing; the check would prove nothing:\n%s", tail(all, 20))
	}
	for name, secret := range map[string]string{
		"bearer token":           token,
		"CA certificate":         string(ca[:40]),
		"CA certificate, base64": base64.StdEncoding.EncodeToString(ca)[:40],
		"Authorization header":   "Bearer ",
	} {
		if strings.Contains(all, secret) {
			t.Errorf("kpf output contains the %s", name)
		}
	}
}
