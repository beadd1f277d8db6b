//go:build unix

package cli

import (
	"os"
	"syscall"
)

// reloadSignals are the signals that make kpf up re-read its file: SIGHUP,
// as daemons do on Unix. kpf reload does the same on every system.
func reloadSignals() []os.Signal { return []os.Signal{syscall.SIGHUP} }
