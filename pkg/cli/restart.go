package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/kpf-dev/kpf/pkg/control"
)

const restartUsage = `Usage: kpf restart [-f FILE] NAME...

Re-dial the named forwards of the kpf up running FILE: each is stopped
(its local ports released) and started again with a fresh backoff. The
other forwards are not touched.

Examples:
    $ kpf restart db
    $ kpf restart -f deploy/forwards.yaml api web
`

func runRestart(ctx context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "restart", restartUsage)
	file := fs.String("f", "", "the `FILE` kpf up runs (default: forwards.yaml found from the current directory up)")
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(env.Stderr, "kpf restart: name at least one forward")
		fs.Usage()
		return ExitUsage
	}
	path, sock, code := controlSocket(env, "restart", *file)
	if code >= 0 {
		return code
	}
	if _, err := control.Fetch(ctx, sock); err != nil {
		return unreachable(env, "restart", path, sock, err)
	}
	code = ExitOK
	for _, name := range fs.Args() {
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
