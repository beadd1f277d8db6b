package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// socksConnect does a SOCKS5 handshake on c: no authentication, then cmd
// to host:port as a domain name (or as an IP literal when host is one). It
// returns the reply code.
func socksConnect(t *testing.T, c net.Conn, cmd byte, host string, port uint16) byte {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection %v, %v", sel, err)
	}
	req := []byte{5, cmd, 0}
	if ip := net.ParseIP(host); ip == nil {
		req = append(req, atypDomain, byte(len(host)))
		req = append(req, host...)
	} else if ip4 := ip.To4(); ip4 != nil {
		req = append(append(req, atypIPv4), ip4...)
	} else {
		req = append(append(req, atypIPv6), ip...)
	}
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	if want := [10]byte{5, rep[1], 0, 1}; rep != want {
		t.Errorf("reply %v, want BND.ADDR 0.0.0.0:0 like %v", rep, want)
	}
	return rep[1]
}

func TestSOCKS5ConnectByName(t *testing.T) {
	echo := echoServer(t)
	n := &names{m: map[string]string{"echo.ns:7": echo}}
	var logs logBuffer
	addr := start(t, (&SOCKS5{Dial: n.dial, Log: logs.logger()}).Serve)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if rep := socksConnect(t, c, cmdConnect, "echo.ns", 7); rep != repSucceeded {
		t.Fatalf("reply %#x, want success", rep)
	}
	if got := n.lastAsked(); got != "echo.ns:7" {
		t.Errorf("dialled %q, want the name unresolved", got)
	}
	c.Write([]byte("hello through socks"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "hello through socks" {
		t.Errorf("echo %q, %v", got, err)
	}
	// The connection's log line is written once both directions end.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "bytesUp=19 bytesDown=19") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l := logs.String(); !strings.Contains(l, "destination=echo.ns:7 outcome=ok bytesUp=19 bytesDown=19") {
		t.Errorf("log does not show the connection:\n%s", l)
	}
}

func TestSOCKS5Replies(t *testing.T) {
	n := &names{m: map[string]string{"down.ns:80": closedAddr(t)}}
	addr := start(t, (&SOCKS5{Dial: n.dial}).Serve)
	tests := []struct {
		name   string
		cmd    byte
		host   string
		port   uint16
		want   byte
		dialed string
	}{
		{"refused name", cmdConnect, "nope.elsewhere", 80, repNotAllowed, "nope.elsewhere:80"},
		{"connection refused", cmdConnect, "down.ns", 80, repConnRefused, "down.ns:80"},
		{"bind", 0x02, "down.ns", 80, repCmdNotSupported, ""},
		{"udp associate", 0x03, "down.ns", 80, repCmdNotSupported, ""},
		{"ipv4 literal", cmdConnect, "10.0.0.1", 443, repNotAllowed, "10.0.0.1:443"},
		{"ipv6 literal", cmdConnect, "fd00::1", 443, repNotAllowed, "[fd00::1]:443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			before := n.lastAsked()
			if rep := socksConnect(t, c, tt.cmd, tt.host, tt.port); rep != tt.want {
				t.Errorf("reply %#x, want %#x", rep, tt.want)
			}
			if got := n.lastAsked(); tt.dialed != "" && got != tt.dialed || tt.dialed == "" && got != before {
				t.Errorf("dialled %q, want %q", got, tt.dialed)
			}
			// The server closes the connection after a failure reply.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if b, err := io.ReadAll(c); err != nil || len(b) > 0 {
				t.Errorf("after the reply: %q, %v; want EOF", b, err)
			}
		})
	}
}

func TestSOCKS5Handshake(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		out     []byte // written by the server
		req     request
		wantErr bool
	}{
		{"connect by name", []byte("\x05\x02\x02\x00\x05\x01\x00\x03\x07echo.ns\x1f\x90"), []byte{5, 0}, request{cmdConnect, "echo.ns:8080"}, false},
		{"ipv4", []byte("\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"), []byte{5, 0}, request{cmdConnect, "127.0.0.1:80"}, false},
		{"only user/password offered", []byte("\x05\x01\x02"), []byte{5, 0xff}, request{}, true},
		{"socks4", []byte("\x04\x01\x00\x50\x7f\x00\x00\x01\x00"), nil, request{}, true},
		{"bad address type", []byte("\x05\x01\x00\x05\x01\x00\x05"), []byte{5, 0, 5, repAddrTypeNotSupport, 0, 1, 0, 0, 0, 0, 0, 0}, request{}, true},
		{"empty name", []byte("\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50"), []byte{5, 0, 5, repHostUnreachable, 0, 1, 0, 0, 0, 0, 0, 0}, request{}, true},
		{"name with a colon", []byte("\x05\x01\x00\x05\x01\x00\x03\x03a:b\x00\x50"), []byte{5, 0, 5, repHostUnreachable, 0, 1, 0, 0, 0, 0, 0, 0}, request{}, true},
		{"truncated", []byte("\x05\x01\x00\x05\x01\x00\x03\x07echo"), []byte{5, 0}, request{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			req, err := handshake(struct {
				io.Reader
				io.Writer
			}{bytes.NewReader(tt.in), &out})
			if (err != nil) != tt.wantErr || req != tt.req && !tt.wantErr {
				t.Errorf("got %+v, %v; want %+v, error %v", req, err, tt.req, tt.wantErr)
			}
			if !bytes.Equal(out.Bytes(), tt.out) {
				t.Errorf("wrote %v, want %v", out.Bytes(), tt.out)
			}
		})
	}
}

func TestDialReply(t *testing.T) {
	var d net.Dialer
	_, refused := d.Dial("tcp", closedAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_, timeout := d.DialContext(ctx, "tcp", "10.255.255.1:80")
	for err, want := range map[error]byte{
		fmt.Errorf("x: %w", ErrRefused): repNotAllowed,
		refused:                         repConnRefused,
		timeout:                         repHostUnreachable,
		&net.DNSError{Err: "no such host", IsNotFound: true}: repHostUnreachable,
		errors.New("no ready endpoint"):                      repGeneralFailure,
	} {
		if got := dialReply(err); got != want {
			t.Errorf("dialReply(%v) = %#x, want %#x", err, got, want)
		}
	}
}

// TestSOCKS5Curl checks the proxy against a real socks5h client.
func TestSOCKS5Curl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s %s", r.Host, r.URL.Path)
	}))
	defer web.Close()
	n := &names{m: map[string]string{"web.ns:8080": web.Listener.Addr().String()}}
	addr := start(t, (&SOCKS5{Dial: n.dial}).Serve)

	out, err := exec.Command(curl, "-sS", "--max-time", "10", "--socks5-hostname", addr, "http://web.ns:8080/path").CombinedOutput()
	if err != nil || string(out) != "hello web.ns:8080 /path" {
		t.Errorf("curl: %q, %v", out, err)
	}
	cmd := exec.Command(curl, "-sS", "--max-time", "10", "http://nope.ns:8080/")
	cmd.Env = append(cmd.Environ(), "ALL_PROXY=socks5h://"+addr)
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 97 {
		// curl's exit code 97 is "proxy handshake error".
		t.Errorf("curl to a refused name: %q, %v; want exit status 97", out, err)
	}
}
