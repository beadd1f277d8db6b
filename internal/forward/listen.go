package forward

import (
	"context"
	"errors"
	"fmt"
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
// forward's, with kpf up's messages) and returns the listeners, for the
// caller to close.
func Listen(ctx context.Context, spec config.Forward, m config.PortMapping) ([]net.Listener, error) {
	return listen(ctx, spec, m, slog.New(slog.DiscardHandler))
}

// IsAddrInUse reports whether err, from CheckListen or a listen, means that
// another socket holds the port.
func IsAddrInUse(err error) bool {
	le, ok := errors.AsType[*listenError](err)
	return ok && le.problem == bindInUse
}
