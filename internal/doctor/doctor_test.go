package doctor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/kube"
)

// parse returns the enabled forwards of a forwards.yaml.
func parse(t *testing.T, yaml string) (*config.Config, []config.Forward) {
	t.Helper()
	cfg, _, err := config.Parse("forwards.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	fwds, err := cfg.Select()
	if err != nil {
		t.Fatal(err)
	}
	return cfg, fwds
}

// A forward whose context cannot be known fails the context check and is
// not checked against a cluster, but its local ports still are: a port
// held by another process is named, with how to find the holder.
func TestRunWithoutContextStillChecksPorts(t *testing.T) {
	port := holdPort(t)
	cfg, fwds := parse(t, `version: 1
forwards:
  - name: web
    service: web
    address: 127.0.0.1
    ports: ["`+strconv.Itoa(port)+`:80"]
`)
	dir := t.TempDir()
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, []byte("apiVersion: v1\nkind: Config\ncontexts: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kc, err := kube.LoadKubeconfig(kcPath)
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), Options{Config: cfg, Forwards: fwds, Kubeconfig: kc})
	if rep.OK {
		t.Fatal("report OK, want a failure")
	}
	byName := map[string]Check{}
	for _, c := range rep.Checks {
		byName[c.Name] = c
	}
	if c := byName["kubeconfig"]; c.Status != OK || !strings.Contains(c.Message, kcPath) {
		t.Errorf("kubeconfig check = %+v, want ok naming %s", c, kcPath)
	}
	if c := byName["context"]; c.Status != Failed || !strings.Contains(c.Message, "no current-context") {
		t.Errorf("context check = %+v, want failed saying there is no current-context", c)
	}
	if c := byName["target"]; c.Status != Skipped {
		t.Errorf("target check = %+v, want skipped", c)
	}
	if c := byName["local-port"]; c.Status != Failed || !strings.Contains(c.Message, "already in use") || c.Forward != "web" {
		t.Errorf("local-port check = %+v, want failed: in use", c)
	}
}

// A port the kpf up of the same file holds is no problem.
func TestRunPortHeldByRunningKpfUp(t *testing.T) {
	port := holdPort(t)
	cfg, fwds := parse(t, `version: 1
forwards:
  - {name: web, service: web, address: 127.0.0.1, ports: ["`+strconv.Itoa(port)+`:80"]}
`)
	checks := localPortChecks(context.Background(), Options{Config: cfg, Running: &Running{PID: 42, Forwards: []string{"web"}}}, fwds[0])
	if len(checks) != 1 || checks[0].Status != OK || !strings.Contains(checks[0].Message, "pid 42") {
		t.Fatalf("checks = %+v, want one ok naming pid 42", checks)
	}
	// Another forward's port is not excused by the running kpf up.
	checks = localPortChecks(context.Background(), Options{Config: cfg, Running: &Running{PID: 42, Forwards: []string{"api"}}}, fwds[0])
	if checks[0].Status != Failed {
		t.Fatalf("checks = %+v, want failed", checks)
	}
}

func TestRunWithoutKubeconfig(t *testing.T) {
	cfg, fwds := parse(t, "version: 1\nforwards:\n  - {name: web, service: web, context: dev, ports: [\"18080:80\"]}\n")
	rep := Run(context.Background(), Options{Config: cfg, Forwards: fwds, KubeconfigErr: os.ErrNotExist})
	if rep.OK || rep.Checks[0].Status != Failed || rep.Checks[0].Name != "kubeconfig" {
		t.Fatalf("report = %+v, want the kubeconfig check failed first", rep)
	}
}

func TestProxyChecks(t *testing.T) {
	held := "127.0.0.1:" + strconv.Itoa(holdPort(t))
	cfg, _ := parse(t, "version: 1\nforwards:\n  - {name: web, service: web, ports: [\"18080:80\"]}\nproxy:\n  socks5: "+held+"\n  http: "+freeAddr(t)+"\n")
	checks := proxyChecks(context.Background(), Options{Config: cfg})
	if len(checks) != 2 {
		t.Fatalf("checks = %+v, want 2", checks)
	}
	if checks[0].Status != Failed || !strings.Contains(checks[0].Message, "socks5") || !strings.Contains(checks[0].Message, "already in use") {
		t.Errorf("socks5 check = %+v, want failed: in use", checks[0])
	}
	if checks[1].Status != OK {
		t.Errorf("http check = %+v, want ok", checks[1])
	}
}

func TestSummarize(t *testing.T) {
	got := summarize(kube.Permissions(config.Service))
	want := "list, watch services, endpointslices.discovery.k8s.io, pods; get, create pods/portforward"
	if got != want {
		t.Errorf("summarize = %q, want %q", got, want)
	}
}

// freeAddr is a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// holdPort listens on a loopback port until the test ends, and returns it.
func holdPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port
}
