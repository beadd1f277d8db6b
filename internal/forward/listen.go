package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"

	"github.com/kpf-dev/kpf/internal/config"
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
// Errors say in plain words, and in the host system's terms, what is wrong
// and how to fix it; they wrap the system's error, so errors.Is with the
// system's errno works (syscall.EADDRINUSE on Unix, WSAEADDRINUSE on
// Windows).
func listen(ctx context.Context, spec config.Forward, m config.PortMapping, log *slog.Logger) ([]net.Listener, error) {
	var lc net.ListenConfig
	return bindEach(spec, m, log, func(a netip.Addr, addr string) (net.Listener, error) {
		// TCP keep-alive finds peers that vanished without a word; a
		// loopback peer cannot (its kernel is ours and ends its
		// connections), and turning it on costs four system calls per
		// accepted connection.
		lc.KeepAlive = 0
		if a.IsLoopback() {
			lc.KeepAlive = -1
		}
		return lc.Listen(ctx, "tcp", addr)
	})
}

// listenUDP binds one local UDP port of spec on every address of
// spec.LocalAddrs, as listen does for TCP.
func listenUDP(ctx context.Context, spec config.Forward, m config.PortMapping, log *slog.Logger) ([]net.PacketConn, error) {
	var lc net.ListenConfig
	return bindEach(spec, m, log, func(_ netip.Addr, addr string) (net.PacketConn, error) {
		return lc.ListenPacket(ctx, "udp", addr)
	})
}

// bindEach binds m's local port on every address of spec with bind, with
// listen's rules and messages.
func bindEach[T io.Closer](spec config.Forward, m config.PortMapping, log *slog.Logger, bind func(a netip.Addr, addr string) (T, error)) ([]T, error) {
	addrs := spec.LocalAddrs()
	if len(addrs) == 0 {
		return nil, fmt.Errorf("invalid local address %q", spec.Address)
	}
	var ls []T
	var missing []error // families this host lacks
	closeAll := func() {
		for _, l := range ls {
			l.Close()
		}
	}
	for _, a := range addrs {
		addr := netip.AddrPortFrom(a, m.Local).String()
		l, err := bind(a, addr)
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
			"protocol", m.Protocol.String(), "skipped", err.Error())
	}
	return ls, nil
}

// CheckListen binds every local address of mapping m of spec, as kpf up
// does, and releases them at once. Its error is the one kpf up would
// report for that port: in use (with how to find the holder), denied, no
// such address, in the words of this system.
func CheckListen(ctx context.Context, spec config.Forward, m config.PortMapping) error {
	ls, err := Listen(ctx, spec, m)
	for _, l := range ls {
		l.Close()
	}
	return err
}

// Listen binds m's local port as kpf up does (every address of the
// forward's, TCP or UDP as m says, with kpf up's messages) and returns
// the sockets, for the caller to close.
func Listen(ctx context.Context, spec config.Forward, m config.PortMapping) ([]io.Closer, error) {
	log := slog.New(slog.DiscardHandler)
	if m.Protocol == config.UDP {
		return closers(listenUDP(ctx, spec, m, log))
	}
	return closers(listen(ctx, spec, m, log))
}

func closers[T io.Closer](ls []T, err error) ([]io.Closer, error) {
	out := make([]io.Closer, len(ls))
	for i, l := range ls {
		out[i] = l
	}
	return out, err
}

// IsAddrInUse reports whether err, from CheckListen or a listen, means that
// another socket holds the port.
func IsAddrInUse(err error) bool {
	le, ok := errors.AsType[*listenError](err)
	return ok && le.problem == bindInUse
}
