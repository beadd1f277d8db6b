package testsupport

import (
	"net"
	"testing"
)

// UDPEcho serves a UDP echo on a loopback port until the test ends, and
// returns the port.
func UDPEcho(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeUDPEcho(t, pc)
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// ServeUDPEcho sends every datagram pc receives back to its sender, whole,
// until the test ends (it then closes pc).
func ServeUDPEcho(t testing.TB, pc net.PacketConn) {
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
}
