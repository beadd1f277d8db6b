//go:build !windows

package config

// busyReadError reports whether err, from reading the config file, means
// only that its writer holds it for now. Unix locks are advisory: a read
// never fails for that.
func busyReadError(error) bool { return false }
