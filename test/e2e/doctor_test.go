//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/doctor"
)

// runDoctor runs `kpf doctor -o json args...` with KUBECONFIG set to
// kubeconfig, and returns its report, its exit code and how long it took.
func runDoctor(t *testing.T, s *suite, kubeconfig string, args ...string) (doctor.Report, int, time.Duration) {
	t.Helper()
	cmd := exec.Command(s.kpf, append([]string{"doctor", "-o", "json"}, args...)...)
	cmd.Env = environ("KUBECONFIG="+kubeconfig, "GORACE=atexit_sleep_ms=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	took := time.Since(start)
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var rep doctor.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("kpf doctor -o json (exit %d): %v\n%s\n%s", code, err, out, stderr.String())
	}
	if strings.Contains(stderr.String(), "WARNING: DATA RACE") {
		t.Errorf("kpf doctor reported a data race:\n%s", stderr.String())
	}
	return rep, code, took
}

// failedCheck returns the first failed check of rep, and whether there is
// one.
func failedCheck(rep doctor.Report) (doctor.Check, bool) {
	for _, c := range rep.Checks {
		if c.Status == doctor.Failed {
			return c, true
		}
	}
	return doctor.Check{}, false
}

// checkOf returns the check named name of the forward (or, with forward
// "", of no forward), and whether there is one.
func checkOf(rep doctor.Report, forward, name string) (doctor.Check, bool) {
	for _, c := range rep.Checks {
		if c.Forward == forward && c.Name == name {
			return c, true
		}
	}
	return doctor.Check{}, false
}

// On a file that works, kpf doctor passes every check and says what it
// found: the user, the server's version, the ready pods and how each port
// resolves. A mistyped target fails with a did-you-mean, and a port held
// by the kpf up of the same file is not a problem.
func TestE2EDoctorChecksAWorkingFile(t *testing.T) {
	s := needSuite(t)
	ns := newNamespace(t, s.primary, "doctor")
	deployEcho(t, s.primary, ns, 2, startBackend(t, "a"), startBackend(t, "b"))
	svcPort, deployPort := freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: svc, service: echo, ports: ["%d:80"]}
  - {name: deploy, deployment: echo, ports: ["%d:echo"]}
`, ns, svcPort, deployPort))

	rep, code, took := runDoctor(t, s, s.kubeconfig, "-f", cfg)
	t.Logf("FIGURE doctor: a working file of 2 forwards checked in %s", took.Round(time.Millisecond))
	if code != 0 || !rep.OK {
		t.Fatalf("exit %d, ok %v, want 0 and true: %+v", code, rep.OK, rep.Checks)
	}
	for _, want := range []struct{ forward, check, text string }{
		{"", "credentials", "accepted, you are "},
		{"", "version", "Kubernetes v1."},
		{"", "permissions", "get, create pods/portforward"},
		{"svc", "target", "2 ready pods"},
		{"svc", "target", "port 80 → pod port 8080"},
		{"deploy", "target", "port echo → pod port 8080"},
		{"deploy", "local-port", "is free"},
	} {
		c, ok := checkOf(rep, want.forward, want.check)
		if !ok || c.Status != doctor.OK || !strings.Contains(c.Message, want.text) {
			t.Errorf("check %s of %q = %+v, want ok with %q", want.check, want.forward, c, want.text)
		}
	}
	server, _ := checkOf(rep, "", "server")
	t.Logf("FIGURE doctor: server check: %s", server.Message)

	// The table says the same, one line per check.
	table := exec.Command(s.kpf, "doctor", "-f", cfg)
	table.Env = environ("KUBECONFIG=" + s.kubeconfig)
	out, err := table.Output()
	if err != nil {
		t.Fatalf("kpf doctor: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "✔"); n != len(rep.Checks)+1 {
		t.Errorf("%d ✔ in the table, want %d (a line per check and the summary):\n%s", n, len(rep.Checks)+1, out)
	}

	p := startKpf(t, s, cfg)
	waitAll(t, s, cfg, "the forwards to be ready", isReady)
	rep, code, _ = runDoctor(t, s, s.kubeconfig, "-f", cfg, "svc")
	if c, _ := checkOf(rep, "svc", "local-port"); code != 0 || !strings.Contains(c.Message, fmt.Sprintf("kpf up already running this file (pid %d)", p.cmd.Process.Pid)) {
		t.Errorf("with kpf up running: exit %d, local-port check %+v", code, c)
	}

	typo := writeConfig(t, fmt.Sprintf(`version: 1
forwards:
  - {name: svc, context: e2e, namespace: %s, service: ecko, ports: ["%d:80"]}
`, ns, freePort(t)))
	rep, code, _ = runDoctor(t, s, s.kubeconfig, "-f", typo)
	c, _ := failedCheck(rep)
	if code != 1 || c.Name != "target" || !strings.Contains(c.Message, `service "ecko" not found`) || !strings.Contains(c.Message, `did you mean "echo"?`) {
		t.Errorf("mistyped service: exit %d, first failure %+v", code, c)
	}
}

// waitAll polls kpf status until cond holds for every forward of cfg, and
// returns their statuses.
func waitAll(t *testing.T, s *suite, cfg, what string, cond func(control.Forward) bool) []control.Forward {
	t.Helper()
	var sts []control.Forward
	waitUntil(t, 60*time.Second, what, func(context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		sts = snap.Forwards
		for _, st := range sts {
			if !cond(st) {
				return false, nil
			}
		}
		return len(sts) > 0, nil
	})
	return sts
}

// rbacRole is the Role of docs/rbac.md, as a user would apply it.
func rbacRole(t *testing.T) *rbacv1.Role {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "rbac.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/rbac.md has no yaml block")
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(m[1]), 4096)
	for {
		var role rbacv1.Role
		if err := dec.Decode(&role); errors.Is(err, io.EOF) {
			t.Fatal("docs/rbac.md's yaml has no Role")
		} else if err != nil {
			t.Fatal(err)
		}
		if role.Kind == "Role" {
			return &role
		}
	}
}

// serviceAccountKubeconfig creates the ServiceAccount name in ns, binds it
// to role, and writes a kubeconfig whose context "e2e" uses a token of it.
func serviceAccountKubeconfig(t *testing.T, c *cluster, ns, name string, role *rbacv1.Role) string {
	t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	role = role.DeepCopy()
	role.Name, role.Namespace = name, ns
	if _, err := c.client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: ns}},
	}
	if _, err := c.client.RbacV1().RoleBindings(ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok, err := c.client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx := kc.Contexts[c.Name]
	kc.AuthInfos = map[string]*clientcmdapi.AuthInfo{name: {Token: tok.Status.Token}}
	kctx.AuthInfo = name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// docs/rbac.md's Role is enough for kpf: a ServiceAccount bound to exactly
// it passes kpf doctor and forwards a service and a deployment. With one
// verb removed (create on pods/portforward), doctor and kpf status both
// name the missing permission.
func TestE2EMinimumRBAC(t *testing.T) {
	s := needSuite(t)
	c := s.primary
	role := rbacRole(t)
	ns := newNamespace(t, c, "rbac")
	deployEcho(t, c, ns, 1, startBackend(t, "a"))
	config := func() string {
		return writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - {name: svc, service: echo, ports: ["%d:80"]}
  - {name: deploy, deployment: echo, ports: ["%d:8080"]}
`, ns, freePort(t), freePort(t)))
	}

	t.Run("enough", func(t *testing.T) {
		kc := serviceAccountKubeconfig(t, c, ns, "kpf", role)
		cfg := config()
		rep, code, _ := runDoctor(t, s, kc, "-f", cfg)
		if code != 0 || !rep.OK {
			t.Fatalf("doctor with docs/rbac.md's Role: exit %d: %+v", code, rep.Checks)
		}
		who, _ := checkOf(rep, "", "credentials")
		if !strings.Contains(who.Message, "system:serviceaccount:"+ns+":kpf") {
			t.Errorf("credentials check %q does not name the ServiceAccount", who.Message)
		}
		startKpfWith(t, s, kc, cfg)
		for _, f := range waitAll(t, s, cfg, "the forwards to be ready with the minimum Role", isReady) {
			port := f.Ports[0].Local[strings.LastIndex(f.Ports[0].Local, ":")+1:]
			if g, err := greeting("127.0.0.1:"+port, 10*time.Second); err != nil || g != "hello from a" {
				t.Fatalf("through %s with the minimum Role: %q, %v", f.Name, g, err)
			}
		}
	})

	t.Run("without create pods/portforward", func(t *testing.T) {
		less := role.DeepCopy()
		for i, r := range less.Rules {
			if len(r.Resources) == 1 && r.Resources[0] == "pods/portforward" {
				less.Rules[i].Verbs = []string{"get"}
			}
		}
		kc := serviceAccountKubeconfig(t, c, ns, "kpf-less", less)
		cfg := config()
		rep, code, _ := runDoctor(t, s, kc, "-f", cfg)
		perm, _ := checkOf(rep, "", "permissions")
		t.Logf("FIGURE rbac: doctor exit %d: %s", code, perm.Message)
		if code != 1 || perm.Status != doctor.Failed || !strings.Contains(perm.Message, "create pods/portforward") ||
			strings.Contains(perm.Message, "get pods/portforward") {
			t.Errorf("doctor: exit %d, permissions check %+v; want exit 1 naming create pods/portforward only", code, perm)
		}
		started := time.Now()
		startKpfWith(t, s, kc, cfg)
		named := func(st control.Forward) bool {
			return strings.Contains(st.Reason, fmt.Sprintf(`permission denied: create pods/portforward in namespace %q`, ns))
		}
		sts := waitAll(t, s, cfg, "status to name the missing permission", named)
		t.Logf("FIGURE rbac: kpf status %s after start: %s: %s", time.Since(started).Round(time.Millisecond), sts[0].State, sts[0].Reason)
	})
}
