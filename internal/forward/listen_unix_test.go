//go:build unix

package forward

import (
	"net"
	"net/netip"
	"syscall"
	"testing"

	"github.com/kpf-dev/kpf/internal/config"
)

// Connections accepted on a loopback address go without TCP keep-alive,
// which cannot find anything there; on any other address they keep Go's
// default, which finds remote clients that vanished.
func TestListenKeepAliveOffOnLoopbackOnly(t *testing.T) {
	addrs := []string{"127.0.0.1"}
	if other := nonLoopbackAddr(); other != "" {
		addrs = append(addrs, other)
	} else {
		t.Log("no non-loopback IPv4 address on this host: checking loopback only")
	}
	for _, addr := range addrs {
		t.Run(addr, func(t *testing.T) {
			ls, err := listen(t.Context(), config.Forward{Address: addr}, mapping(0), discard)
			if err != nil {
				t.Fatal(err)
			}
			defer ls[0].Close()
			c, err := net.Dial("tcp", ls[0].Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ac, err := ls[0].Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer ac.Close()
			raw, err := ac.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var on int
			var serr error
			if err := raw.Control(func(fd uintptr) {
				on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
			}); err != nil || serr != nil {
				t.Fatal(err, serr)
			}
			want := !netip.MustParseAddr(addr).IsLoopback()
			if (on != 0) != want {
				t.Errorf("SO_KEEPALIVE = %d on a connection accepted on %s; want on: %v", on, addr, want)
			}
		})
	}
}

// nonLoopbackAddr returns an IPv4 address of this host that is not a
// loopback one, or "".
func nonLoopbackAddr() string {
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range ifAddrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}
