package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/kpf-dev/kpf/pkg/config"
)

// listen binds one local port of spec on every address of
// spec.LocalAddrs. For "localhost" (the default) that is 127.0.0.1 and
// ::1, as kubectl port-forward does, so that a client reaching localhost
// over either family finds the forward: a family this host lacks (no IPv4
// loopback, IPv6 disabled) is logged and skipped, and listen fails only if
// neither address could be bound. Any other failure, on any address, fails
// the forward: a port that another process holds on 127.0.0.1 would
// otherwise send half of the "localhost" clients to that process.
//
// Errors say in plain words what is wrong and how to fix it; they wrap the
// system's error, so errors.Is(err, syscall.EADDRINUSE) and the like work.
func listen(ctx context.Context, spec config.Forward, m config.PortMapping, log *slog.Logger) ([]net.Listener, error) {
	addrs := spec.LocalAddrs()
	if len(addrs) == 0 {
		return nil, fmt.Errorf("invalid local address %q", spec.Address)
	}
	var lc net.ListenConfig
	var ls []net.Listener
	var missing []error // families this host lacks
	closeAll := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	for _, a := range addrs {
		addr := netip.AddrPortFrom(a, m.Local).String()
		// TCP keep-alive finds peers that vanished without a word; a
		// loopback peer cannot (its kernel is ours and ends its
		// connections), and turning it on costs four system calls per
		// accepted connection.
		lc.KeepAlive = 0
		if a.IsLoopback() {
			lc.KeepAlive = -1
		}
		l, err := lc.Listen(ctx, "tcp", addr)
		if err == nil {
			ls = append(ls, l)
			continue
		}
		err = bindError(addr, m, err)
		if len(addrs) == 1 || !familyMissing(err) {
			closeAll()
			return nil, err
		}
		missing = append(missing, err)
	}
	if len(ls) == 0 {
		return nil, fmt.Errorf("localhost:%d: this host has no loopback address to listen on: %w", m.Local, errors.Join(missing...))
	}
	for _, err := range missing {
		log.Info("listening on one loopback address only", "local", net.JoinHostPort(spec.Address, strconv.Itoa(int(m.Local))),
			"listening", ls[0].Addr().String(), "skipped", err.Error())
	}
	return ls, nil
}

// familyMissing reports whether a bind failed because the host lacks the
// address or its whole family, rather than because of a conflict or a
// permission.
func familyMissing(err error) bool {
	return errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EAFNOSUPPORT) ||
		errors.Is(err, syscall.EPROTONOSUPPORT)
}

// listenError is a failure to bind a local address, told in words a user
// acts on.
type listenError struct {
	addr string // "127.0.0.1:8080"
	msg  string
	err  error
}

func (e *listenError) Error() string { return e.addr + ": " + e.msg }
func (e *listenError) Unwrap() error { return e.err }

// bindError translates the error of listening on addr for mapping m.
func bindError(addr string, m config.PortMapping, err error) error {
	host, _, _ := net.SplitHostPort(addr)
	ip, _ := netip.ParseAddr(host)
	family := "IPv4"
	if ip.Is6() {
		family = "IPv6"
	}
	var msg string
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		msg = fmt.Sprintf("local port %d is already in use by another process (stop it, or pick another local port)", m.Local)
	case errors.Is(err, syscall.EACCES) && int(m.Local) < unprivilegedPortStart():
		msg = fmt.Sprintf("local port %d is privileged: binding a port below %d needs root or CAP_NET_BIND_SERVICE "+
			"(pick a local port of %d or more, such as %q)", m.Local, unprivilegedPortStart(), unprivilegedPortStart(), suggestPort(m))
	case errors.Is(err, syscall.EACCES):
		msg = fmt.Sprintf("permission denied binding local port %d (%v)", m.Local, errors.Unwrap(err))
	case errors.Is(err, syscall.EADDRNOTAVAIL) && ip.IsLoopback():
		msg = fmt.Sprintf("%s is not an address of this host: it has no %s loopback (use address: localhost to listen on whichever loopback address it has)", host, family)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		msg = fmt.Sprintf("%s is not an address of this host (use one of its addresses, or localhost)", host)
	case errors.Is(err, syscall.EAFNOSUPPORT), errors.Is(err, syscall.EPROTONOSUPPORT):
		msg = fmt.Sprintf("%s is not available on this host", family)
	default:
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &listenError{addr: addr, msg: msg, err: err}
}

// suggestPort proposes an unprivileged mapping for m: 80 becomes "8080:80".
func suggestPort(m config.PortMapping) string {
	local := int(m.Local) + 8000
	if local < unprivilegedPortStart() || local > 65535 {
		local = 8080
	}
	return strconv.Itoa(local) + ":" + m.Remote.String()
}

// unprivilegedPortStart is the lowest port an unprivileged process may bind:
// Linux's net.ipv4.ip_unprivileged_port_start, else 1024.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 65536 {
		return 1024
	}
	return n
}
