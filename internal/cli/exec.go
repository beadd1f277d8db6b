package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/control"
)

const execLong = `Bring the forwards up (or only those NAMEd), wait until they are ready,
run COMMAND with their environment added (see kpf env), and exit with
COMMAND's exit status. The forwards come from the kpf up already running
the file, if one does (it keeps running), else kpf exec runs them itself
and stops them when COMMAND exits.

Signals sent to kpf exec (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are passed to
COMMAND, and the forwards stay up until it exits. Ctrl-C on a terminal
reaches COMMAND from the terminal itself, so kpf does not send it again.
If the forwards are not all ready within --timeout, COMMAND does not run
and kpf exits 1 with the status table.`

const execExample = `  kpf exec -- go test ./integration/...
  kpf exec db -- psql "$DATABASE_URL"
  kpf exec -- sh -c 'curl -sf "http://$KPF_WEB_ADDR/healthz"'`

func newExecCmd(env Env) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:               "exec [NAME...] -- COMMAND [ARG...]",
		Short:             "Run a command with the forwards up and their addresses in its environment",
		Long:              execLong,
		Example:           forName(env, execExample),
		ValidArgsFunction: completeNames(&f.file),
		RunE: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash < 0 || dash == len(args) {
				fmt.Fprintf(env.Stderr, "%s exec: name the command after --, as in: %s exec -- go test ./...\n", env.Name, env.Name)
				return done(ExitUsage)
			}
			return done(runExec(cmd.Context(), env, f, args[:dash], args[dash:]))
		},
	}
	fl := cmd.Flags()
	addFileFlag(cmd, &f.file, fileUsage)
	addKubeFlags(cmd, &f.kube)
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "how long to wait for every forward to be ready")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "log what the forwards do (by default only warnings)")
	return cmd
}

func runExec(ctx context.Context, env Env, f upFlags, names, command []string) int {
	cfg, _, ok := loadFile(env, f.file)
	if !ok {
		return ExitInvalid
	}
	forwards, err := cfg.Select(names...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf exec: %v\n", err)
		return ExitUsage
	}
	sock, err := control.SocketPath(cfg.File)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf exec: %v\n", err)
		return ExitInvalid
	}
	var ended <-chan string
	if _, err := control.Fetch(ctx, sock); err != nil {
		stop, upEnded := startForwards(ctx, env, f, cfg.File, names)
		defer stop()
		ended = upEnded
	}
	snap, why := awaitReady(ctx, sock, f.timeout, forwards, ended)
	if why != "" {
		if len(snap.Forwards) > 0 {
			printStatus(env.Stderr, running(snap.Forwards))
		}
		fmt.Fprintf(env.Stderr, "kpf exec: %s; %s did not run\n", why, command[0])
		return ExitInvalid
	}
	vars, err := appVars(forwards, &snap, nil)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf exec: %v\n", err)
		return ExitInvalid
	}
	return runCommand(env, command, environ(os.Environ(), vars))
}

// startForwards runs kpf up of path in this process, quietly (warnings
// only, unless -v; no table), for the life of the command: stop ends it
// and waits. ended says why it ended if it ends by itself.
func startForwards(ctx context.Context, env Env, f upFlags, path string, names []string) (stop func(), ended <-chan string) {
	// The forwards outlive a signal: it is the command's to act on.
	upCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.file, f.noTUI, f.quiet, f.once, f.logFormat = path, true, true, false, "text"
	upEnv := Env{Stdin: nil, Stdout: io.Discard, Stderr: env.Stderr, Name: env.Name}
	done := make(chan int, 1)
	why := make(chan string, 1)
	go func() {
		code := runUp(upCtx, upEnv, f, names)
		done <- code
		why <- fmt.Sprintf("the forwards stopped (exit status %d)", code)
	}()
	return func() { cancel(); <-done }, why
}

// awaitReady polls the kpf up serving sock until every one of forwards is
// ready, and returns its status. Otherwise it returns why not: timeout
// passed, ctx ended, or ended said kpf up ended.
func awaitReady(ctx context.Context, sock string, timeout time.Duration, forwards []config.Forward, ended <-chan string) (control.Snapshot, string) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last control.Snapshot
	for {
		if snap, err := control.Fetch(ctx, sock); err == nil {
			last = snap
			if readyAmong(snap, forwards) {
				return snap, ""
			}
		}
		select {
		case <-ctx.Done():
			return last, "interrupted"
		case why := <-ended:
			return last, why
		case <-deadline.C:
			return last, fmt.Sprintf("not every forward became ready within %s", timeout)
		case <-tick.C:
		}
	}
}

// runCommand runs command with environ and the terminal's streams,
// passing signals on to it, and returns its exit status (128+N for a
// command killed by signal N, as shells report it).
func runCommand(env Env, command, environ []string) int {
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = environ
	cmd.Stdin, cmd.Stdout, cmd.Stderr = env.Stdin, env.Stdout, env.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(env.Stderr, "kpf exec: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) {
			return 127
		}
		return 126
	}
	stop := passSignals(cmd.Process, env.Stdin)
	err := cmd.Wait()
	stop()
	if err == nil {
		return ExitOK
	}
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return exitStatus(ee)
	}
	fmt.Fprintf(env.Stderr, "kpf exec: %v\n", err)
	return ExitInvalid
}
