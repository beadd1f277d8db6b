//go:build !windows

package cli

import "os"

// enableVT has nothing to do outside Windows: a terminal interprets escape
// sequences as it is.
func enableVT(*os.File) (restore func(), err error) { return func() {}, nil }
