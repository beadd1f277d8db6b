package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/statedir"
)

// logPath is where kpf up -d's supervisor of the config file at path
// logs: a per-user, per-file file in the state directory, which is made
// private (0700) on the way.
func logPath(path string) (string, error) {
	id, err := control.FileID(path)
	if err != nil {
		return "", err
	}
	state, err := statedir.State()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(state, "logs")
	for _, d := range []string{state, dir} {
		if err := statedir.Private(d); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, id+".log"), nil
}

// runDetached is kpf up -d: it checks the file, starts kpf up in the
// background (its own session, surviving this terminal; logging to
// logPath), waits until every forward is ready or --timeout passes, and
// prints the status table. The background kpf up keeps running either
// way; kpf down stops it.
func runDetached(ctx context.Context, env Env, f upFlags, names []string) int {
	path, forwards, code := detachedFile(env, f.file, names)
	if code >= 0 {
		return code
	}
	sock, err := control.SocketPath(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf up: %v\n", err)
		return ExitInvalid
	}
	var ended <-chan string
	pid := 0
	if snap, err := control.Fetch(ctx, sock); err == nil {
		pid = snap.PID
		for _, f := range forwards {
			if _, ok := findForward(&snap, f.Name); !ok {
				fmt.Fprintf(env.Stderr, "kpf up: the kpf up (pid %d) running %s does not run %s\n\thint: stop it with kpf down, then start the forwards you need with kpf up -d NAME...\n", pid, path, f.Name)
				return ExitInvalid
			}
		}
		fmt.Fprintf(env.Stderr, "kpf up: a kpf up (pid %d) already runs %s\n", pid, path)
	} else {
		logFile, err := logPath(path)
		if err != nil {
			fmt.Fprintf(env.Stderr, "kpf up: log file: %v\n", err)
			return ExitInvalid
		}
		cmd, err := startSupervisor(env, f, names, path, logFile)
		if err != nil {
			fmt.Fprintf(env.Stderr, "kpf up: start kpf up in the background: %v\n", err)
			return ExitInvalid
		}
		pid = cmd.Process.Pid
		why := make(chan string, 1)
		go func() {
			err := cmd.Wait()
			out, _ := os.ReadFile(logFile)
			why <- fmt.Sprintf("the background kpf up exited (%s); its last log lines (%s):\n%s",
				exitDescription(err), logFile, lastLines(string(out), 10))
		}()
		ended = why
	}
	snap, why := awaitReady(ctx, sock, f.timeout, forwards, ended)
	switch {
	case why == "":
		printStatus(env.Stdout, running(snap.Forwards))
		fmt.Fprintf(env.Stderr, "kpf up: running in the background (pid %d)\n\thint: kpf status, kpf logs -f, kpf down\n", pid)
		return ExitOK
	case len(snap.Forwards) > 0:
		printStatus(env.Stdout, running(snap.Forwards))
	}
	fmt.Fprintf(env.Stderr, "kpf up: %s\n", why)
	if _, err := control.Fetch(context.WithoutCancel(ctx), sock); err == nil {
		fmt.Fprintf(env.Stderr, "\tkpf up keeps running in the background (pid %d)\n\thint: see why with kpf status and kpf logs; stop it with kpf down\n", pid)
	}
	return ExitInvalid
}

// detachedFile finds the config file and checks it (and the names) here,
// so that a problem is told on this terminal; it returns the file's
// absolute path and the forwards selected, or the exit code.
func detachedFile(env Env, file string, names []string) (string, []config.Forward, int) {
	cfg, _, ok := loadFile(env, file)
	if !ok {
		return "", nil, ExitInvalid
	}
	forwards, err := cfg.Select(names...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf up: %v\n", err)
		return "", nil, ExitUsage
	}
	abs, err := filepath.Abs(cfg.File)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf up: %v\n", err)
		return "", nil, ExitInvalid
	}
	return abs, forwards, -1
}

// startSupervisor starts this program as `kpf up` of path in a session
// of its own, with the flags that shape the supervisor, logging to
// logFile; its standard streams go nowhere.
func startSupervisor(env Env, f upFlags, names []string, path, logFile string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"up", "--file", path, "--no-tui", "--log-file", logFile, "--log-format", f.logFormat}
	if f.logFile != "" {
		args[5] = f.logFile
	}
	if f.kube.kubeconfig != "" {
		args = append(args, "--kubeconfig", f.kube.kubeconfig)
	}
	if f.kube.context != "" {
		args = append(args, "--context", f.kube.context)
	}
	if f.verbose {
		args = append(args, "--verbose")
	}
	if f.probeInterval > 0 {
		args = append(args, "--probe-interval", f.probeInterval.String())
	}
	if f.metricsAddr != "" {
		args = append(args, "--metrics-addr", f.metricsAddr)
	}
	if f.pprof {
		args = append(args, "--pprof")
	}
	args = append(args, "--")
	args = append(args, names...)
	cmd := exec.Command(exe, args...)
	cmd.SysProcAttr = detachedProcess()
	// The supervisor must not hold this terminal's streams: a pipe a
	// script reads would never end.
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// exitDescription says how a process ended, from cmd.Wait's error.
func exitDescription(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return strings.TrimPrefix(ee.ProcessState.String(), "exit ")
	}
	if err == nil {
		return "status 0"
	}
	return err.Error()
}
