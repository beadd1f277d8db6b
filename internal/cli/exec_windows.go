package cli

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
)

// passSignals keeps kpf alive while the command runs: Ctrl-C and
// Ctrl-Break reach every process attached to the console, the command
// included, so there is nothing to pass on; kpf only waits for the
// command to end before it stops the forwards.
func passSignals(_ *os.Process, _ io.Reader) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt)
	return func() { signal.Stop(ch) }
}

// exitStatus is a finished command's exit code.
func exitStatus(ee *exec.ExitError) int { return ee.ExitCode() }
