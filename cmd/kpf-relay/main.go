// Command kpf-relay is the relay kpf runs as a pod to reach destinations
// that have no pod (external hosts, ExternalName services, UDP servers).
// kpf starts it with the exact destinations of forwards.yaml and reaches it
// through a port-forward; see package internal/relay. It listens on
// loopback inside its pod, so nothing but a port-forward reaches it, and it
// exits by itself when kpf's heartbeat stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/kpf-dev/kpf/internal/buildinfo"
	"github.com/kpf-dev/kpf/internal/relay"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("kpf-relay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", relay.DefaultListen, "address to listen on (loopback: only port-forwards reach it)")
	var srv relay.Server
	fs.Func("allow", "a destination the relay may reach, as host:port/tcp or host:port/udp (repeat the flag for more)", func(s string) error {
		d, err := relay.ParseDest(s)
		if err == nil {
			srv.Allow = append(srv.Allow, d)
		}
		return err
	})
	fs.DurationVar(&srv.HeartbeatTimeout, "heartbeat-timeout", relay.DefaultHeartbeatTimeout, "exit after this long without a heartbeat from kpf")
	fs.DurationVar(&srv.UDPIdle, "udp-idle", relay.DefaultUDPIdle, "close a UDP stream after this long without a datagram")
	version := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *version {
		fmt.Fprintln(stderr, "kpf-relay "+buildinfo.Get().String()[len("kpf "):])
		return 0
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	srv.Log = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	dests := make([]string, len(srv.Allow))
	for i, d := range srv.Allow {
		dests[i] = d.String()
	}
	log.Info("relay ready", "listen", ln.Addr().String(), "allow", dests, "heartbeatTimeout", srv.HeartbeatTimeout.String(), "version", buildinfo.Get().Version)
	switch err := srv.Serve(ctx, ln); {
	case errors.Is(err, relay.ErrNoHeartbeat):
		// Its kpf is gone: finishing is this relay's normal end.
		log.Info("exiting: no heartbeat from kpf", "after", srv.HeartbeatTimeout.String())
		return 0
	case err != nil:
		log.Error("serve", "err", err)
		return 1
	}
	log.Info("exiting: stopped")
	return 0
}
