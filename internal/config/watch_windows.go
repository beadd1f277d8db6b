package config

import (
	"errors"

	"golang.org/x/sys/windows"
)

// busyReadError reports whether err, from reading the config file, means
// only that its writer holds it for now: an editor that writes in place
// may open the file without sharing it, or lock a range of it, until it
// has finished.
func busyReadError(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_LOCK_VIOLATION)
}
