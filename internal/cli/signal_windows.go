package cli

import "os"

// reloadSignals is empty: Windows has no SIGHUP (a console sends only
// Ctrl-C, Ctrl-Break, close, logoff and shutdown events). kpf reload
// re-reads the file over the control pipe instead.
func reloadSignals() []os.Signal { return nil }
