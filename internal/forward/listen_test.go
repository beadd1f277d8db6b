package forward

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kpf-dev/kpf/internal/config"
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
				if !strings.Contains(err.Error(), want) || !errors.Is(err, hostBind().errnos[bindInUse][0]) {
					t.Errorf("address %s: error %q, want it to say %q and wrap the system's EADDRINUSE", addr, err, want)
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
	if err == nil || !strings.Contains(err.Error(), "192.0.2.1 is not an address of this host") || !errors.Is(err, hostBind().errnos[bindNoAddress][0]) {
		t.Errorf("error %v", err)
	}
}

// The message for each system error on each system, without needing the
// condition nor the system.
func TestBindErrorMessages(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	linux, darwin, windows := linuxBind(1024), darwinBind(), windowsBind()
	for _, tt := range []struct {
		os    string
		facts bindFacts
		addr  string
		errno syscall.Errno
		want  string
	}{
		{"linux", linux, "127.0.0.1:8080", syscall.EADDRINUSE, "127.0.0.1:8080: local port 8080 is already in use by another process (stop it, or pick another local port; `ss -ltnp 'sport = :8080'` shows which process)"},
		{"linux", linux, "127.0.0.1:80", syscall.EACCES, `127.0.0.1:80: local port 80 is privileged: binding a port below 1024 needs root or CAP_NET_BIND_SERVICE (pick a local port of 1024 or more, such as "8080:80")`},
		{"linux", linuxBind(80), "127.0.0.1:80", syscall.EACCES, "127.0.0.1:80: permission denied binding local port 80 (bind: permission denied)"},
		{"linux", linux, "127.0.0.1:8080", syscall.EACCES, "127.0.0.1:8080: permission denied binding local port 8080 (bind: permission denied)"},
		{"linux", linux, "127.0.0.1:8080", syscall.EADDRNOTAVAIL, "127.0.0.1:8080: 127.0.0.1 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"},
		// All of 127.0.0.0/8 is on lo: a failure there means no IPv4 loopback at all.
		{"linux", linux, "127.0.0.2:8080", syscall.EADDRNOTAVAIL, "127.0.0.2:8080: 127.0.0.2 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"linux", linux, "[::1]:8080", syscall.EADDRNOTAVAIL, "[::1]:8080: ::1 is not an address of this host: it has no IPv6 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"linux", linux, "10.1.2.3:8080", syscall.EADDRNOTAVAIL, "10.1.2.3:8080: 10.1.2.3 is not an address of this host (use one of its addresses, or localhost)"},
		{"linux", linux, "[::1]:8080", syscall.EAFNOSUPPORT, "[::1]:8080: IPv6 is not available on this host"},

		{"darwin", darwin, "127.0.0.1:8080", syscall.EADDRINUSE, "127.0.0.1:8080: local port 8080 is already in use by another process (stop it, or pick another local port; `lsof -nP -iTCP:8080 -sTCP:LISTEN` shows which process)"},
		{"darwin", darwin, "127.0.0.1:80", syscall.EACCES, `127.0.0.1:80: local port 80 is privileged: macOS lets only root bind a port below 1024 to a specific address such as 127.0.0.1 (pick a local port of 1024 or more, such as "8080:80")`},
		{"darwin", darwin, "[::1]:443", syscall.EACCES, `[::1]:443: local port 443 is privileged: macOS lets only root bind a port below 1024 to a specific address such as ::1 (pick a local port of 1024 or more, such as "8443:80")`},
		// Since Mojave the wildcard address takes any port: a refusal is something else.
		{"darwin", darwin, "0.0.0.0:80", syscall.EACCES, "0.0.0.0:80: macOS denied binding local port 80, which is not privileged (bind: permission denied): security software or a sandbox may be keeping kpf from listening"},
		{"darwin", darwin, "127.0.0.1:8080", syscall.EACCES, "127.0.0.1:8080: macOS denied binding local port 8080, which is not privileged (bind: permission denied): security software or a sandbox may be keeping kpf from listening"},
		{"darwin", darwin, "127.0.0.2:8080", syscall.EADDRNOTAVAIL, "127.0.0.2:8080: 127.0.0.2 is not an address of this Mac: its loopback interface lo0 has only 127.0.0.1 (add it with `sudo ifconfig lo0 alias 127.0.0.2 up`, which lasts until the Mac restarts, or use 127.0.0.1)"},
		{"darwin", darwin, "127.1.2.3:8080", syscall.EADDRNOTAVAIL, "127.1.2.3:8080: 127.1.2.3 is not an address of this Mac: its loopback interface lo0 has only 127.0.0.1 (add it with `sudo ifconfig lo0 alias 127.1.2.3 up`, which lasts until the Mac restarts, or use 127.0.0.1)"},
		{"darwin", darwin, "127.0.0.1:8080", syscall.EADDRNOTAVAIL, "127.0.0.1:8080: 127.0.0.1 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"darwin", darwin, "10.1.2.3:8080", syscall.EADDRNOTAVAIL, "10.1.2.3:8080: 10.1.2.3 is not an address of this host (use one of its addresses, or localhost)"},

		{"windows", windows, "127.0.0.1:8080", wsaEADDRINUSE, "127.0.0.1:8080: local port 8080 is already in use by another process (stop it, or pick another local port; `netstat -ano | findstr :8080` shows which process)"},
		// No privileged ports: a refusal is an excluded range or an exclusive holder.
		{"windows", windows, "127.0.0.1:80", wsaEACCES, "127.0.0.1:80: Windows refused local port 80: it is in a range of ports the system reserves (often for Hyper-V, WSL 2 or Docker; `netsh interface ipv4 show excludedportrange protocol=tcp` lists them), or another program holds it with exclusive access (pick another local port)"},
		{"windows", windows, "[::1]:50000", wsaEACCES, "[::1]:50000: Windows refused local port 50000: it is in a range of ports the system reserves (often for Hyper-V, WSL 2 or Docker; `netsh interface ipv6 show excludedportrange protocol=tcp` lists them), or another program holds it with exclusive access (pick another local port)"},
		{"windows", windows, "127.0.0.1:8080", wsaEADDRNOTAVAIL, "127.0.0.1:8080: 127.0.0.1 is not an address of this host: it has no IPv4 loopback (use address: localhost to listen on whichever loopback address it has)"},
		{"windows", windows, "10.1.2.3:8080", wsaEADDRNOTAVAIL, "10.1.2.3:8080: 10.1.2.3 is not an address of this host (use one of its addresses, or localhost)"},
		{"windows", windows, "[::1]:8080", wsaEAFNOSUPPORT, "[::1]:8080: IPv6 is not available on this host"},
		// Go's syscall.EADDRINUSE on Windows is a number no system call
		// returns; Winsock's codes are not Unix errnos either.
		{"windows", windows, "127.0.0.1:8080", syscall.EADDRINUSE, "listen on 127.0.0.1:8080: listen tcp: bind: " + syscall.EADDRINUSE.Error()},
		{"linux", linux, "127.0.0.1:8080", wsaEADDRINUSE, "listen on 127.0.0.1:8080: listen tcp: bind: " + wsaEADDRINUSE.Error()},
	} {
		_, port, _ := net.SplitHostPort(tt.addr)
		local, _ := strconv.Atoi(port)
		err := bindErrorOn(tt.facts, tt.addr, mapping(uint16(local)), opErr(tt.errno))
		if err.Error() != tt.want {
			t.Errorf("%s, %s, errno %d:\n got %s\nwant %s", tt.os, tt.addr, tt.errno, err, tt.want)
		}
		if !errors.Is(err, tt.errno) {
			t.Errorf("%s, %s, errno %d: the error does not wrap the errno", tt.os, tt.addr, tt.errno)
		}
	}
}

// localhost skips a family the host lacks, and only that: the errors that
// mean so differ between Unix and Windows.
func TestFamilyMissing(t *testing.T) {
	opErr := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	for _, tt := range []struct {
		os    string
		facts bindFacts
		errno syscall.Errno
		want  bool
	}{
		{"linux", linuxBind(1024), syscall.EADDRNOTAVAIL, true},
		{"linux", linuxBind(1024), syscall.EAFNOSUPPORT, true},
		{"linux", linuxBind(1024), syscall.EPROTONOSUPPORT, true},
		{"linux", linuxBind(1024), syscall.EADDRINUSE, false},
		{"linux", linuxBind(1024), syscall.EACCES, false},
		{"darwin", darwinBind(), syscall.EADDRNOTAVAIL, true},
		{"darwin", darwinBind(), syscall.EADDRINUSE, false},
		{"windows", windowsBind(), wsaEADDRNOTAVAIL, true},
		{"windows", windowsBind(), wsaEAFNOSUPPORT, true},
		{"windows", windowsBind(), wsaEPROTONOSUPPORT, true},
		{"windows", windowsBind(), wsaEADDRINUSE, false},
		{"windows", windowsBind(), wsaEACCES, false},
		{"windows", windowsBind(), syscall.EADDRNOTAVAIL, false},
	} {
		err := bindErrorOn(tt.facts, "[::1]:8080", mapping(8080), opErr(tt.errno))
		if got := familyMissing(err); got != tt.want {
			t.Errorf("%s, errno %d: familyMissing = %v, want %v (error %v)", tt.os, tt.errno, got, tt.want, err)
		}
	}
}
