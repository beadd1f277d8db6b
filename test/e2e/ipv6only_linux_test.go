//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/testsupport"
)

// netnsHelperEnv, when set, makes the e2e test binary a helper instead of
// running tests: in the new network namespace it was started in, it brings
// lo up, removes 127.0.0.1 from it and execs the command in the variable's
// value (arguments separated by \x1f, the unit separator). Doing it in Go
// needs no ip(8) or unshare(1).
const netnsHelperEnv = "KPF_E2E_IPV6_ONLY_EXEC"

// exitNoNetns is the helper's exit code when it cannot make the namespace
// IPv6-only (no IPv6, or not permitted).
const exitNoNetns = 97

func init() {
	if v := os.Getenv(netnsHelperEnv); v != "" {
		ipv6OnlyExec(strings.Split(v, "\x1f"))
	}
}

// ipv6OnlyCommand returns a command that runs argv in a new network
// namespace whose loopback has ::1 but not 127.0.0.1. It skips the test if
// this host cannot make one.
func ipv6OnlyCommand(t *testing.T, argv ...string) *exec.Cmd {
	t.Helper()
	probe := exec.Command(os.Args[0])
	probe.Env = append(os.Environ(), netnsHelperEnv+"=/bin/true")
	probe.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if out, err := probe.CombinedOutput(); err != nil {
		t.Skipf("cannot make an IPv6-only network namespace here (namespaces or IPv6 unavailable in this container): %v\n%s", err, out)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), netnsHelperEnv+"="+strings.Join(argv, "\x1f"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	return cmd
}

// ifreq is struct ifreq: an interface name and a union.
type ifreq struct {
	name [16]byte
	data [24]byte
}

func ioctl(fd int, req uintptr, r *ifreq) error {
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(r))); errno != 0 {
		return errno
	}
	return nil
}

// ipv6OnlyExec runs in the helper process: lo up, 127.0.0.1 gone (set to
// 0.0.0.0, which deletes it, as ifconfig lo 0.0.0.0 does), then exec.
func ipv6OnlyExec(argv []string) {
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "ipv6-only helper: %s: %v\n", what, err)
		os.Exit(exitNoNetns)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		fail("socket", err)
	}
	var r ifreq
	copy(r.name[:], "lo")
	if err := ioctl(fd, syscall.SIOCGIFFLAGS, &r); err != nil {
		fail("get lo flags", err)
	}
	*(*uint16)(unsafe.Pointer(&r.data[0])) |= syscall.IFF_UP
	if err := ioctl(fd, syscall.SIOCSIFFLAGS, &r); err != nil {
		fail("bring lo up", err)
	}
	var a ifreq
	copy(a.name[:], "lo")
	(*syscall.RawSockaddrInet4)(unsafe.Pointer(&a.data[0])).Family = syscall.AF_INET
	if err := ioctl(fd, syscall.SIOCSIFADDR, &a); err != nil {
		fail("remove 127.0.0.1 from lo", err)
	}
	syscall.Close(fd)
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
		fail("check", errors.New("127.0.0.1 is still there"))
	}
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		fail("listen on ::1", err)
	}
	l.Close()
	env := slicesDeleteKey(os.Environ(), netnsHelperEnv)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fail("find "+argv[0], err)
	}
	fail("exec", syscall.Exec(path, argv, env))
}

// /proc/PID/net/tcp6 lists the TCP sockets of PID's network namespace;
// listening reports whether one listens on [::1]:port.
func listening(t *testing.T, pid int, file, hexAddr string, port int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, file))
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("%s:%04X", hexAddr, port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == local && f[3] == "0A" {
			return true
		}
	}
	return false
}

const (
	hexLoopback4 = "0100007F"
	hexLoopback6 = "00000000000000000000000001000000"
)

// On a host whose loopback has only ::1 (a new network namespace with
// 127.0.0.1 removed from lo), the default address, localhost, serves on ::1, an
// explicit ::1 too, and an explicit 127.0.0.1 fails that forward alone
// with a reason naming the missing IPv4 loopback. kpf cannot reach the
// API server from there, but it binds first.
func TestE2ELocalhostOnIPv6OnlyHost(t *testing.T) {
	needRoot(t)
	s := needSuite(t)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	dflt, v4, v6 := freePort(t), freePort(t), freePort(t)
	cfg := writeConfig(t, fmt.Sprintf(`version: 1
defaults: {context: e2e, namespace: default}
forwards:
  - name: dflt
    service: echo
    ports: ["%d:80"]
  - name: v4
    service: echo
    address: 127.0.0.1
    ports: ["%d:80"]
  - name: v6
    service: echo
    address: "::1"
    ports: ["%d:80"]
`, dflt, v4, v6))
	cmd := ipv6OnlyCommand(t, s.kpf, "up", "-f", cfg, "-v")
	cmd.Env = append(cmd.Env, "KUBECONFIG="+s.kubeconfig)
	p := startKpfCmd(t, cmd)
	pid := cmd.Process.Pid // the helper execs kpf: the same process

	const missing = "127.0.0.1 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"
	if l := p.line("v4"); !strings.Contains(l, fmt.Sprintf("127.0.0.1:%d: %s", v4, missing)) {
		t.Errorf("v4's startup line: %q", l)
	}
	waitUntil(t, 30*time.Second, "kpf status to show v4's reason", func(ctx context.Context) (bool, error) {
		snap, _ := kpfStatus(t, s, cfg)
		return strings.Contains(statusOf(snap, "v4").Reason, missing), nil
	})
	snap, _ := kpfStatus(t, s, cfg)
	for _, name := range []string{"dflt", "v6"} {
		if f := statusOf(snap, name); f.State == control.StateRetrying || f.State == "" {
			t.Errorf("%s: %s: %s", name, f.State, f.Reason)
		}
	}
	if local := statusOf(snap, "dflt").Ports[0].Local; local != fmt.Sprintf("localhost:%d", dflt) {
		t.Errorf("dflt's LOCAL is %q", local)
	}
	for name, port := range map[string]int{"dflt": dflt, "v6": v6} {
		if !listening(t, pid, "tcp6", hexLoopback6, port) {
			t.Errorf("%s does not listen on [::1]:%d in kpf's namespace", name, port)
		}
	}
	for _, port := range []int{dflt, v4} {
		if listening(t, pid, "tcp", hexLoopback4, port) {
			t.Errorf("something listens on 127.0.0.1:%d in a namespace without it", port)
		}
	}
	if !strings.Contains(p.stderr.String(), `msg="listening on one loopback address only" forward=dflt`) {
		t.Errorf("kpf did not log which loopback it skipped for dflt:\n%s", testsupport.LastLines(p.stderr.String(), 30))
	}
}
