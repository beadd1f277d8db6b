//go:build linux

package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kpf-dev/kpf/internal/testsupport"
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
	// The check reads what kpf has logged of all that: wait for the
	// restart's line, logged after the connections'.
	waitUntil(t, 10*time.Second, "kpf to log the restart", func(context.Context) (bool, error) {
		return strings.Contains(p.stderr.String(), `"msg":"restarted on request"`), nil
	})

	all := p.stdout.String() + p.stderr.String() + statusOut
	if !strings.Contains(all, `"msg":"connection opened"`) {
		t.Fatalf("verbose JSON logs missing; the check would prove nothing:\n%s", testsupport.LastLines(all, 20))
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

// kpf's error paths do not log credentials either: with a token the API
// server rejects (401) and with a CA that does not match the server's
// certificate (a failing TLS handshake), in verbose JSON and text logs,
// the output shows the failure but neither the token, nor the CA, nor an
// Authorization header.
func TestE2EErrorLogsCarryNoCredentials(t *testing.T) {
	s := needSuite(t)
	kc, err := clientcmd.LoadFromFile(s.primary.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	var realToken string
	for _, u := range kc.AuthInfos {
		realToken = u.Token
	}
	const bogusToken = "kpf-e2e-bogus-token-4f9c2a7d1e8b6035"
	otherCA := selfSignedCA(t)

	unauthorized := kc.DeepCopy()
	for _, u := range unauthorized.AuthInfos {
		u.Token = bogusToken
	}
	wrongCA := kc.DeepCopy()
	for _, c := range wrongCA.Clusters {
		c.CertificateAuthorityData = otherCA
	}
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - name: echo
    context: e2e
    service: echo
    ports: ["%d:80"]
`, freePort(t)))
	for _, tt := range []struct {
		name    string
		kc      *clientcmdapi.Config
		secrets map[string]string
		shows   []string // evidence that the error path ran
	}{
		{"unauthorized", unauthorized, map[string]string{"bogus token": bogusToken, "real token": realToken}, []string{"rejected the credentials (401)"}},
		{"wrong CA", wrongCA, map[string]string{"token": realToken, "CA": base64.StdEncoding.EncodeToString(otherCA)[:40], "CA PEM": string(otherCA[30:70])}, []string{"its certificate is signed by an authority the kubeconfig does not trust"}},
	} {
		for _, format := range []string{"json", "text"} {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "kubeconfig")
				if err := clientcmd.WriteToFile(*tt.kc, path); err != nil {
					t.Fatal(err)
				}
				cmd := exec.Command(s.kpf, "up", "-f", cfg, "-v", "--log-format", format, "--once", "--timeout", "8s")
				cmd.Env = environ("KUBECONFIG=" + path)
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Fatalf("kpf up --once succeeded with a broken kubeconfig:\n%s", out)
				}
				for _, want := range tt.shows {
					if !strings.Contains(string(out), want) {
						t.Fatalf("output does not show the failure (%q); the check would prove nothing:\n%s", want, testsupport.LastLines(string(out), 20))
					}
				}
				tt.secrets["Authorization header"] = "Bearer "
				for name, secret := range tt.secrets {
					if strings.Contains(string(out), secret) {
						t.Errorf("kpf output contains the %s:\n%s", name, testsupport.LastLines(string(out), 20))
					}
				}
			})
		}
	}
}

// selfSignedCA returns a PEM CA certificate that signed nothing the test
// cluster uses.
func selfSignedCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "not the cluster's CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
