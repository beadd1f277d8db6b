package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
)

// SOCKS5 is a SOCKS5 proxy (RFC 1928) without authentication that supports
// only CONNECT. Destinations given as domain names are passed to Dial
// unresolved, as socks5h:// clients (curl --socks5-hostname) send them; IPv4
// and IPv6 destinations are passed as literals.
type SOCKS5 struct {
	// Dial opens every upstream connection. It must be set.
	Dial DialFunc
	// Log gets one Debug line per connection; nil discards.
	Log *slog.Logger
}

// SOCKS5 protocol constants.
const (
	socksVersion = 0x05

	methodNoAuth       = 0x00
	methodNoAcceptable = 0xff

	cmdConnect = 0x01

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// Reply codes.
const (
	repSucceeded          = 0x00
	repGeneralFailure     = 0x01
	repNotAllowed         = 0x02
	repNetUnreachable     = 0x03
	repHostUnreachable    = 0x04
	repConnRefused        = 0x05
	repCmdNotSupported    = 0x07
	repAddrTypeNotSupport = 0x08
)

// request is a parsed SOCKS5 request.
type request struct {
	cmd byte
	// addr is "host:port", host a name or an IP literal.
	addr string
}

// requestError is a malformed request, with the reply it calls for.
type requestError struct {
	rep byte
	msg string
}

func (e *requestError) Error() string { return e.msg }

// Serve accepts SOCKS5 clients on ln until ctx is done or Accept fails.
// Then it closes ln and every client and upstream connection, waits for the
// goroutines serving them, and returns nil (or Accept's error). The
// handshake of each client must finish within 10 seconds.
func (s *SOCKS5) Serve(ctx context.Context, ln net.Listener) error {
	var g group
	if err := serve(ctx, ln, &g, func(ctx context.Context, c net.Conn) { s.handle(ctx, &g, c) }); err != nil {
		return fmt.Errorf("socks5 proxy: %w", err)
	}
	return nil
}

// handle serves one client; the caller closes c.
func (s *SOCKS5) handle(ctx context.Context, g *group, c net.Conn) {
	start := time.Now()
	log := logger(s.Log).With("proxy", "socks5", "client", c.RemoteAddr().String())
	var up, down int64
	dest, outcome := "", "ok"
	defer func() {
		log.Debug("connection closed", "destination", dest, "outcome", outcome,
			"bytesUp", up, "bytesDown", down, "duration", time.Since(start).Round(time.Millisecond))
	}()

	c.SetDeadline(time.Now().Add(handshakeTimeout))
	req, err := handshake(c)
	dest = req.addr
	if err != nil {
		outcome = "bad handshake: " + err.Error()
		return
	}
	if req.cmd != cmdConnect {
		outcome = fmt.Sprintf("unsupported command %#x", req.cmd)
		writeReply(c, repCmdNotSupported)
		return
	}
	// The handshake deadline does not bound the dial: kpf's Dialer waits
	// for a ready endpoint as long as its own configuration says.
	c.SetDeadline(time.Time{})
	upc, err := s.Dial(ctx, "tcp", req.addr)
	if err != nil {
		outcome = err.Error()
		writeReply(c, dialReply(err))
		return
	}
	if !g.add(upc) {
		outcome = "proxy stopped"
		return
	}
	defer g.remove(upc)
	if err := writeReply(c, repSucceeded); err != nil {
		outcome = "write reply: " + err.Error()
		return
	}
	up, down = pipe(c, upc)
}

// handshake negotiates the method on rw and reads the request. The reply
// to the request is left to the caller unless the request is malformed.
func handshake(rw io.ReadWriter) (request, error) {
	ok, err := readGreeting(rw)
	if err != nil {
		return request{}, err
	}
	if !ok {
		rw.Write([]byte{socksVersion, methodNoAcceptable})
		return request{}, errors.New("client offers no acceptable method (only no-authentication is supported)")
	}
	if _, err := rw.Write([]byte{socksVersion, methodNoAuth}); err != nil {
		return request{}, err
	}
	req, err := readRequest(rw)
	if re, ok := errors.AsType[*requestError](err); ok {
		writeReply(rw, re.rep)
	}
	return req, err
}

// readGreeting reads the client's method selection message and reports
// whether it offers "no authentication required".
func readGreeting(r io.Reader) (bool, error) {
	var buf [255]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return false, fmt.Errorf("read greeting: %w", err)
	}
	if buf[0] != socksVersion {
		return false, fmt.Errorf("not SOCKS5: version %#x", buf[0])
	}
	methods := buf[:buf[1]]
	if _, err := io.ReadFull(r, methods); err != nil {
		return false, fmt.Errorf("read greeting: %w", err)
	}
	for _, m := range methods {
		if m == methodNoAuth {
			return true, nil
		}
	}
	return false, nil
}

// readRequest reads a SOCKS5 request:
//
//	VER CMD RSV ATYP DST.ADDR DST.PORT
//
// It reads at most 262 bytes and allocates only the address string. A
// request with an unsupported command is returned without an error: the
// caller replies to it. A malformed one is a *requestError carrying the
// reply code; I/O errors are returned wrapped.
func readRequest(r io.Reader) (request, error) {
	var buf [256]byte
	if _, err := io.ReadFull(r, buf[:4]); err != nil {
		return request{}, fmt.Errorf("read request: %w", err)
	}
	if buf[0] != socksVersion {
		return request{}, &requestError{repGeneralFailure, fmt.Sprintf("request version %#x, want 5", buf[0])}
	}
	req := request{cmd: buf[1]}
	var host string
	switch atyp := buf[3]; atyp {
	case atypIPv4:
		if _, err := io.ReadFull(r, buf[:4]); err != nil {
			return request{}, fmt.Errorf("read request: %w", err)
		}
		host = netip.AddrFrom4([4]byte(buf[:4])).String()
	case atypIPv6:
		if _, err := io.ReadFull(r, buf[:16]); err != nil {
			return request{}, fmt.Errorf("read request: %w", err)
		}
		host = netip.AddrFrom16([16]byte(buf[:16])).String()
	case atypDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return request{}, fmt.Errorf("read request: %w", err)
		}
		name := buf[:buf[0]]
		if _, err := io.ReadFull(r, name); err != nil {
			return request{}, fmt.Errorf("read request: %w", err)
		}
		if !validName(name) {
			return request{}, &requestError{repHostUnreachable, fmt.Sprintf("invalid domain name %q", name)}
		}
		host = string(name)
	default:
		return request{}, &requestError{repAddrTypeNotSupport, fmt.Sprintf("unsupported address type %#x", atyp)}
	}
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return request{}, fmt.Errorf("read request: %w", err)
	}
	port := int(buf[0])<<8 | int(buf[1])
	req.addr = net.JoinHostPort(host, strconv.Itoa(port))
	return req, nil
}

// validName reports whether name can be a DNS name: not empty, and only
// letters, digits, '-', '_' and '.'.
func validName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// writeReply writes a reply with BND.ADDR 0.0.0.0:0.
func writeReply(w io.Writer, rep byte) error {
	_, err := w.Write([]byte{socksVersion, rep, 0x00, atypIPv4, 0, 0, 0, 0, 0, 0})
	return err
}

// dialReply maps a dial error to a reply code.
func dialReply(err error) byte {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, ErrRefused):
		return repNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return repHostUnreachable
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return repHostUnreachable
	}
	return repGeneralFailure
}
