package forward

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/kpf-dev/kpf/pkg/config"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// freePort returns a port free on both loopback addresses.
func freePort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if l6, err := net.Listen("tcp", fmt.Sprintf("[::1]:%d", port)); err == nil {
			l6.Close()
			return uint16(port)
		}
	}
	t.Fatal("no port free on both 127.0.0.1 and ::1")
	return 0
}

func hasIPv6Loopback(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("this host has no IPv6 loopback: %v", err)
	}
	l.Close()
}

func mapping(port uint16) config.PortMapping {
	return config.PortMapping{Local: port, Remote: config.Port{Number: 80}}
}

// localhost binds both loopback addresses, like kubectl port-forward; an
// explicit address binds only itself.
func TestListenLocalhostBindsBothLoopbacks(t *testing.T) {
	hasIPv6Loopback(t)
	port := freePort(t)
	ls, err := listen(t.Context(), config.Forward{Address: config.Localhost}, mapping(port), discard)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range ls {
		got = append(got, l.Addr().String())
	}
	want := []string{fmt.Sprintf("127.0.0.1:%d", port), fmt.Sprintf("[::1]:%d", port)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("localhost listens on %v, want %v", got, want)
	}
	for _, addr := range want {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Errorf("dial %s: %v", addr, err)
			continue
		}
		c.Close()
	}
	for _, l := range ls {
		l.Close()
	}

	for _, addr := range []string{"127.0.0.1", "::1"} {
		ls, err := listen(t.Context(), config.Forward{Address: addr}, mapping(port), discard)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 1 || !strings.Contains(ls[0].Addr().String(), addr) {
			t.Errorf("address %s listens on %v", addr, ls)
		}
		ls[0].Close()
	}
}

// A port another process holds on one loopback address fails a localhost
// forward, with the port and the reason, and leaves nothing bound: binding
// only the other family would send some clients to that process.
func TestListenPortInUse(t *testing.T) {
	hasIPv6Loopback(t)
	for _, busyAddr := range []string{"127.0.0.1", "::1"} {
		t.Run(busyAddr, func(t *testing.T) {
			port := freePort(t)
			busy, err := net.Listen("tcp", net.JoinHostPort(busyAddr, fmt.Sprint(port)))
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			for _, addr := range []string{config.Localhost, busyAddr} {
				ls, err := listen(t.Context(), config.Forward{Address: addr}, mapping(port), discard)
				if err == nil {
					t.Fatalf("address %s: listened on %v over a busy port", addr, ls)
				}
				want := fmt.Sprintf("local port %d is already in use by another process", port)
				if !strings.Contains(err.Error(), want) || !errors.Is(err, syscall.EADDRINUSE) {
					t.Errorf("address %s: error %q, want it to say %q and wrap EADDRINUSE", addr, err, want)
				}
			}
			// Nothing was left bound on the free family.
			other := "::1"
			if busyAddr == "::1" {
				other = "127.0.0.1"
			}
			l, err := net.Listen("tcp", net.JoinHostPort(other, fmt.Sprint(port)))
			if err != nil {
				t.Fatalf("the free address %s was left bound: %v", other, err)
			}
			l.Close()
		})
	}
}

// An address this host does not have is a clear error.
func TestListenAddressNotOnThisHost(t *testing.T) {
	// 192.0.2.1 is TEST-NET-1, never assigned to a real host.
	_, err := listen(t.Context(), config.Forward{Address: "192.0.2.1"}, mapping(freePort(t)), discard)
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1 is not an address of this host") || !errors.Is(err, syscall.EADDRNOTAVAIL) {
		t.Errorf("error %v", err)
	}
}

// The messages for each system error, without needing the condition.
func TestBindErrorMessages(t *testing.T) {
	start := unprivilegedPortStart()
	if start <= 80 {
		t.Skipf("net.ipv4.ip_unprivileged_port_start is %d: port 80 is not privileged here", start)
	}
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	for _, tt := range []struct {
		addr  string
		port  uint16
		errno syscall.Errno
		want  string
	}{
		{"127.0.0.1:8080", 8080, syscall.EADDRINUSE, "127.0.0.1:8080: local port 8080 is already in use by another process (stop it, or pick another local port)"},
		{"127.0.0.1:80", 80, syscall.EACCES, fmt.Sprintf(`127.0.0.1:80: local port 80 is privileged: binding a port below %d needs root or CAP_NET_BIND_SERVICE (pick a local port of %d or more, such as "8080:80")`, start, start)},
		{"127.0.0.1:8080", 8080, syscall.EADDRNOTAVAIL, "127.0.0.1:8080: 127.0.0.1 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"[::1]:8080", 8080, syscall.EADDRNOTAVAIL, "[::1]:8080: ::1 is not an address of this host: it has no IPv6 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"10.1.2.3:8080", 8080, syscall.EADDRNOTAVAIL, "10.1.2.3:8080: 10.1.2.3 is not an address of this host (use one of its addresses, or localhost)"},
		{"[::1]:8080", 8080, syscall.EAFNOSUPPORT, "[::1]:8080: IPv6 is not available on this host"},
	} {
		err := bindError(tt.addr, mapping(tt.port), opErr(tt.errno))
		if err.Error() != tt.want {
			t.Errorf("%s %v:\n got %s\nwant %s", tt.addr, tt.errno, err, tt.want)
		}
		if !errors.Is(err, tt.errno) {
			t.Errorf("%s %v: the error does not wrap the errno", tt.addr, tt.errno)
		}
	}
}
