package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/control"
)

const reloadLong = `Make the kpf up running FILE re-read it now and converge to it, as it
does by itself when the file changes (and on SIGHUP, on Unix). Only the
forwards that changed are restarted. An invalid file is reported here,
with its lines, and the running forwards are kept.

Exit status: 0 when kpf up took the file, 1 when it found it invalid (or
refused the caller), 3 when no kpf up runs the file.`

const reloadExample = `  kpf reload
  kpf reload -f deploy/forwards.yaml`

func newReloadCmd(env Env) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:     "reload",
		Short:   "Make the running kpf up re-read its file",
		Long:    reloadLong,
		Example: forName(env, reloadExample),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runReload(cmd.Context(), env, file))
		},
	}
	addFileFlag(cmd, &file, runningFileUsage)
	return cmd
}

func runReload(ctx context.Context, env Env, file string) int {
	path, sock, code := controlSocket(env, "reload", file)
	if code >= 0 {
		return code
	}
	if _, err := control.Fetch(ctx, sock); err != nil {
		return unreachable(env, "reload", path, sock, err)
	}
	err := control.Reload(ctx, sock)
	switch {
	case errors.Is(err, control.ErrInvalidConfig):
		fmt.Fprintln(env.Stderr, err)
		fmt.Fprintf(env.Stderr, "kpf reload: %s is invalid; kpf up keeps running the forwards it ran\n", path)
		return ExitInvalid
	case err != nil:
		fmt.Fprintf(env.Stderr, "kpf reload: %v\n", err)
		return ExitInvalid
	}
	fmt.Fprintf(env.Stdout, "reloaded %s\n", path)
	return ExitOK
}
