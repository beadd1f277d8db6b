//go:build unix

package cli

import (
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

// passSignals passes SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to kpf on to
// p until stop is called. SIGINT is not passed when stdin is a terminal:
// the terminal sends Ctrl-C to its whole foreground process group, p
// included, and a command should not get it twice.
func passSignals(p *os.Process, stdin io.Reader) (stop func()) {
	interactive := false
	if f, ok := stdin.(*os.File); ok {
		interactive = term.IsTerminal(int(f.Fd()))
	}
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				if sig == syscall.SIGINT && interactive {
					continue
				}
				p.Signal(sig)
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}

// exitStatus is a finished command's status as a shell reports it:
// 128+N when signal N killed it.
func exitStatus(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ee.ExitCode()
}
