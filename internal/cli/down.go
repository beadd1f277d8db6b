package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/control"
)

const downLong = `Stop the kpf up running FILE, in the background (kpf up -d) or in
another terminal: its forwards stop, their open connections are closed
and their ports released, and the process exits. kpf down returns once
it has.

Exit status: 0 when it stopped, and also when no kpf up runs the file
(it says so); 1 when the kpf up could not be asked (another user's) or
did not stop within --timeout.`

const downExample = `  kpf up -d && ./run-integration-tests; kpf down
  kpf down -f deploy/forwards.yaml`

func newDownCmd(env Env) *cobra.Command {
	var file string
	timeout := 30 * time.Second
	cmd := &cobra.Command{
		Use:     "down",
		Short:   "Stop the kpf up running the file",
		Long:    downLong,
		Example: forName(env, downExample),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runDown(cmd.Context(), env, file, timeout))
		},
	}
	addFileFlag(cmd, &file, runningFileUsage)
	cmd.Flags().DurationVar(&timeout, "timeout", timeout, "how long to wait for kpf up to stop")
	return cmd
}

func runDown(ctx context.Context, env Env, file string, timeout time.Duration) int {
	path, sock, code := controlSocket(env, "down", file)
	if code >= 0 {
		return code
	}
	snap, err := control.Fetch(ctx, sock)
	if err != nil {
		if code := unreachable(env, "down", path, sock, err); code != ExitNotRunning {
			return code
		}
		// Stopping what does not run succeeds: the state asked for holds.
		fmt.Fprintf(env.Stdout, "no kpf up is running %s\n", path)
		return ExitOK
	}
	if err := control.Shutdown(ctx, sock); err != nil {
		fmt.Fprintf(env.Stderr, "kpf down: %v\n", err)
		return ExitInvalid
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := waitGone(ctx, sock, snap.PID); err != nil {
		fmt.Fprintf(env.Stderr, "kpf down: kpf up (pid %d) of %s did not stop within %s\n\thint: see kpf logs -f %s\n", snap.PID, path, timeout, path)
		return ExitInvalid
	}
	fmt.Fprintf(env.Stdout, "stopped kpf up (pid %d) of %s\n", snap.PID, path)
	return ExitOK
}

// waitGone waits until the kpf up with pid no longer answers on sock
// (it closes its control endpoint once its forwards have stopped) and
// its process has exited, or ctx ends.
func waitGone(ctx context.Context, sock string, pid int) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := control.Fetch(fctx, sock)
		cancel()
		if err != nil && !processAlive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
