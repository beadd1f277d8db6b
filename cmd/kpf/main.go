// Command kpf is a declarative port-forward supervisor for Kubernetes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kpf-dev/kpf/internal/cli"
)

// main stops kpf gracefully on the first interrupt and at once on the
// second. The same two signals cover every system:
//   - Unix: SIGINT (Ctrl-C) and SIGTERM (kill, systemd, launchd).
//   - Windows: Go turns Ctrl-C and Ctrl-Break into os.Interrupt, and closing
//     the console window, logging off or shutting down into SIGTERM; for
//     those the runtime holds the console's handler until kpf exits, and
//     Windows allows about 5 seconds (console close) before it ends the
//     process anyway, which kpf's shutdown fits in.
//
// Reloading on SIGHUP is up to the command (Unix only; kpf reload works
// everywhere).
func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore default handling so that a
		// second Ctrl-C kills the process.
		<-ctx.Done()
		stop()
	}()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Name: cli.ProgramName(os.Args[0])}
	code := cli.Run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}
