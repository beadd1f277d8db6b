//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/testsupport"
)

// nobody is the uid and gid tests run kpf as when they need another user.
const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root, to run kpf as another user (nobody); CI runs the e2e tests as root")
	}
}

// nobodyDir returns a new directory owned by nobody that everyone may read.
func nobodyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kpf-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// writeFileFor writes a file that uid owns.
func writeFileFor(t *testing.T, path, content string, uid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// environ is os.Environ with the given KEY=VALUE pairs replacing any
// earlier value.
func environ(kv ...string) []string {
	env := os.Environ()
	for _, pair := range kv {
		key, _, _ := strings.Cut(pair, "=")
		env = slicesDeleteKey(env, key)
		env = append(env, pair)
	}
	return env
}

func slicesDeleteKey(env []string, key string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, key+"=") {
			out = append(out, e)
		}
	}
	return out
}

// asUser makes cmd run as uid (and the same gid) when uid is not ours.
func asUser(cmd *exec.Cmd, uid int) {
	if uid != os.Getuid() {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	}
}

// exitCode runs cmd and returns its combined output and exit code.
func exitCode(t *testing.T, cmd *exec.Cmd) (string, int) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out), 0
}

// The control socket is 0600 in a 0700 directory, so another user cannot
// even connect; and if someone loosens those modes, kpf up still refuses
// the other user (SO_PEERCRED) with a message saying why. Neither kpf
// status nor kpf restart run as nobody learns anything or restarts
// anything.
func TestE2EControlSocketRefusesOtherUsers(t *testing.T) {
	needRoot(t)
	s := needSuite(t)
	runtimeDir := nobodyDir(t) // searchable by nobody, so only the socket's own modes keep it out
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	cfgDir := nobodyDir(t)
	cfg := filepath.Join(cfgDir, "forwards.yaml")
	if err := os.WriteFile(cfg, []byte(echoConfig("default", freePort(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startKpf(t, s, cfg)

	sock, err := control.SocketPath(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("control socket %s has mode %v, want a socket with 0600", sock, fi.Mode())
	}
	if di, err := os.Stat(filepath.Dir(sock)); err != nil || di.Mode().Perm() != 0o700 {
		t.Errorf("control socket directory: %v, %v; want mode 0700", di.Mode(), err)
	}
	if out, code := exitCode(t, exec.Command(s.kpf, "status", "-f", cfg)); code == 3 || !strings.Contains(out, "FORWARD") {
		t.Fatalf("kpf status as the owner: exit %d\n%s", code, out)
	}

	asNobody := func(args ...string) (string, int) {
		cmd := exec.Command(s.kpf, append([]string{args[0], "-f", cfg}, args[1:]...)...)
		cmd.Env = environ("XDG_RUNTIME_DIR="+runtimeDir, "HOME="+cfgDir, "KUBECONFIG=/nonexistent")
		asUser(cmd, nobody)
		return exitCode(t, cmd)
	}
	checkRefused := func(what, want string) {
		t.Helper()
		for _, args := range [][]string{{"status"}, {"status", "-o", "json"}, {"restart", "echo"}} {
			out, code := asNobody(args...)
			if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "hint: run kpf "+args[0]+" as") {
				t.Errorf("%s: kpf %s as nobody: exit %d, want 1 and %q:\n%s", what, strings.Join(args, " "), code, want, out)
			}
			for _, leak := range []string{"FORWARD", `"forwards"`, "svc/echo", "restarted"} {
				if strings.Contains(out, leak) {
					t.Errorf("%s: kpf %s as nobody got %q:\n%s", what, strings.Join(args, " "), leak, out)
				}
			}
		}
	}
	checkRefused("with the socket's own modes", "permission denied on the control socket "+sock+": the kpf up running "+cfg+" belongs to another user")

	// A careless chmod opens the socket to everyone: kpf up still refuses.
	if err := os.Chmod(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	checkRefused("with the modes opened", "refused by kpf up: kpf up refuses uid 65534: it runs as uid 0, and its control socket serves only that user and root")
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("the control socket went away: %v\n%s", err, testsupport.LastLines(p.stderr.String(), 20))
	}
}

// privilegedFreePort returns a port below 1024 free on both loopbacks.
func privilegedFreePort(t *testing.T) int {
	t.Helper()
	for port := 1023; port > 900; port-- {
		l4, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l4.Close()
		if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
			l6.Close()
		} else if errors.Is(err, syscall.EADDRINUSE) {
			continue
		}
		return port
	}
	t.Fatal("no privileged port free")
	return 0
}

// Local bind failures fail only their own forward, each with a reason that
// says what is wrong: a port another process holds, a privileged port
// without the privilege (kpf runs as nobody), an address the host does not
// have. The good forward beside them serves.
func TestE2EBindErrorsStayPerForward(t *testing.T) {
	s := needSuite(t)
	uid := os.Getuid()
	if uid == 0 {
		uid = nobody
	}
	start := 1024
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err == nil {
		start, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	ns := newNamespace(t, s.primary, "bind")
	deployEcho(t, s.primary, ns, 1, startBackend(t, "a"))
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	good, low := freePort(t), privilegedFreePort(t)

	dir := os.TempDir()
	if uid == nobody {
		dir = nobodyDir(t)
		t.Setenv("XDG_RUNTIME_DIR", dir)
	}
	kc, err := os.ReadFile(s.primary.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, fmt.Sprintf("kubeconfig-%d", time.Now().UnixNano()))
	writeFileFor(t, kubeconfig, string(kc), uid)
	cfg := filepath.Join(dir, fmt.Sprintf("forwards-%d.yaml", time.Now().UnixNano()))
	writeFileFor(t, cfg, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: %s}
forwards:
  - name: good
    service: echo
    ports: ["%d:80"]
  - name: busy
    service: echo
    ports: ["%d:80"]
  - name: low
    service: echo
    ports: ["%d:80"]
  - name: elsewhere
    service: echo
    address: 192.0.2.1
    allowNonLoopback: true
    ports: ["%d:80"]
`, ns, good, busyPort, low, freePort(t)), uid)
	t.Cleanup(func() { os.Remove(cfg); os.Remove(kubeconfig) })

	cmd := exec.Command(s.kpf, "up", "-f", cfg, "-v")
	cmd.Env = environ("KUBECONFIG="+kubeconfig, "HOME="+dir)
	asUser(cmd, uid)
	p := startKpfCmd(t, cmd)

	if g, err := greeting(fmt.Sprintf("127.0.0.1:%d", good), 10*time.Second); err != nil || g != "hello from a" {
		t.Fatalf("good forward: %q, %v", g, err)
	}
	if g, err := greeting(fmt.Sprintf("[::1]:%d", good), 10*time.Second); err != nil || g != "hello from a" {
		t.Errorf("good forward over ::1 (localhost binds both loopbacks): %q, %v", g, err)
	}
	want := map[string]string{
		"busy":      fmt.Sprintf("127.0.0.1:%d: local port %d is already in use by another process (stop it, or pick another local port; `ss -ltnp 'sport = :%d'` shows which process)", busyPort, busyPort, busyPort),
		"elsewhere": "192.0.2.1 is not an address of this host (use one of its addresses, or localhost)",
	}
	if low < start {
		want["low"] = fmt.Sprintf("127.0.0.1:%d: local port %d is privileged: binding a port below %d needs root or CAP_NET_BIND_SERVICE (pick a local port of %d or more, such as \"%d:80\")",
			low, low, start, start, low+8000)
	} else {
		t.Logf("not checking the privileged port: net.ipv4.ip_unprivileged_port_start is %d, so port %d needs no privilege here", start, low)
	}
	for name, reason := range want {
		if l := p.line(name); !strings.Contains(l, reason) {
			t.Errorf("%s's startup line: %q\nwant it to contain %q", name, l, reason)
		}
	}
	waitUntil(t, 30*time.Second, "kpf status to show each reason", func(ctx context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		for name, reason := range want {
			if f := statusOf(snap, name); f.State != control.StateRetrying || !strings.Contains(f.Reason, reason) {
				return false, nil
			}
		}
		return statusOf(snap, "good").State == control.StateReady, nil
	})
}

// A forward on a non-loopback address (allowed by the file) is announced
// with a warning that cannot be missed, in the log and, when the log goes
// to a file, on standard error too; a loopback forward is not.
func TestE2ENonLoopbackIsAnnouncedLoudly(t *testing.T) {
	s := needSuite(t)
	newConfig := func() (cfg, banner string) {
		open := freePort(t)
		cfg = writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: default}
forwards:
  - name: lan
    service: nope
    address: 0.0.0.0
    allowNonLoopback: true
    ports: ["%d:80"]
  - name: local
    service: nope
    ports: ["%d:80"]
`, open, freePort(t)))
		return cfg, fmt.Sprintf(`!!! NOT LOOPBACK: forward "lan" listens on 0.0.0.0:%d: any machine that can reach this one can connect to e2e/default/svc/nope through it (allowNonLoopback: true in %s)`, open, cfg)
	}
	cfg, banner := newConfig()

	p := startKpf(t, s, cfg)
	logs := p.stderr.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "NOT LOOPBACK") {
			line = l
		}
	}
	if !strings.Contains(line, "level=WARN") || !strings.Contains(line, strings.ReplaceAll(banner, `"`, `\"`)) {
		t.Errorf("no loud warning in the log; got %q\nwant a WARN with %q", line, banner)
	}
	if strings.Count(logs, "NOT LOOPBACK") != 1 || strings.Contains(logs, `NOT LOOPBACK: forward \"local\"`) {
		t.Errorf("want exactly one announcement, for lan:\n%s", logs)
	}

	logFile := filepath.Join(t.TempDir(), "kpf.log")
	cfg2, banner2 := newConfig()
	p2 := startKpf(t, s, cfg2, "--log-file", logFile)
	waitUntil(t, 10*time.Second, "the warning on stderr", func(ctx context.Context) (bool, error) {
		return strings.Contains(p2.stderr.String(), "kpf up: "+banner2), nil
	})
	if l := mustRead(t, logFile); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "NOT LOOPBACK") {
		t.Errorf("log file lacks the warning:\n%s", testsupport.LastLines(l, 20))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
