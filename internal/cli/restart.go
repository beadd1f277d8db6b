package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/control"
)

const restartLong = `Re-dial the named forwards of the kpf up running FILE: each is stopped
(its local ports released) and started again with a fresh backoff. The
other forwards are not touched.`

const restartExample = `  kpf restart db
  kpf restart api web -f deploy/forwards.yaml`

func newRestartCmd(env Env) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:               "restart NAME...",
		Short:             "Re-dial forwards of the running kpf up",
		Long:              restartLong,
		Example:           forName(env, restartExample),
		ValidArgsFunction: completeNames(&file),
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &argError{cmd: cmd, msg: "name at least one forward"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runRestart(cmd.Context(), env, file, args))
		},
	}
	addFileFlag(cmd, &file, runningFileUsage)
	return cmd
}

func runRestart(ctx context.Context, env Env, file string, names []string) int {
	path, sock, code := controlSocket(env, "restart", file)
	if code >= 0 {
		return code
	}
	if _, err := control.Fetch(ctx, sock); err != nil {
		return unreachable(env, "restart", path, sock, err)
	}
	code = ExitOK
	for _, name := range names {
		if err := control.Restart(ctx, sock, name); err != nil {
			if errors.Is(err, control.ErrUnknownForward) {
				fmt.Fprintf(env.Stderr, "kpf restart: no forward %q is running\n", name)
			} else {
				fmt.Fprintf(env.Stderr, "kpf restart: %v\n", err)
			}
			code = ExitInvalid
			continue
		}
		fmt.Fprintf(env.Stdout, "restarted %s\n", name)
	}
	return code
}
