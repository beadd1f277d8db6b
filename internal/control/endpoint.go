package control

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// configKey is what names a config file's endpoint: its absolute path,
// with symbolic links resolved when the file exists (on Windows that also
// gives the path's letters their case on disk), so that every spelling of
// one file finds the same kpf up.
func configKey(configPath string) (string, error) {
	abs, err := filepath.Abs(configPath)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", configPath, err)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// FileID is 16 hex digits that stand for a config file, the same for
// every spelling of its path (see configKey): what names the file's
// endpoint, and the per-file state other packages keep (kpf up -d's log).
func FileID(configPath string) (string, error) {
	key, err := configKey(configPath)
	if err != nil {
		return "", err
	}
	return hashName(key), nil
}

// hashName is the 16 hex digits (64 bits of SHA-256) that stand for key in
// an endpoint's name.
func hashName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

// socketName is the file name of the control socket of the config file
// whose key is abs: 21 bytes, whatever the file's path.
func socketName(abs string) string { return hashName(abs) + ".sock" }

// socketIn returns the socket path name would have in the first of dirs
// where that path is at most max bytes long (the platform's sun_path less
// its terminating NUL). The choice depends only on its arguments, so kpf
// up and the commands that talk to it agree on it. It is an error if name
// fits in none of dirs.
func socketIn(dirs []string, name string, max int) (string, error) {
	for _, dir := range dirs {
		if p := path.Join(dir, name); len(p) <= max {
			return p, nil
		}
	}
	return "", fmt.Errorf("no directory gives the control socket a path of at most %d bytes (tried %s)", max, strings.Join(dirs, ", "))
}

// pipeName is the Windows named pipe of the config file whose key is abs,
// for the user whose SID is sid. Pipe names are global to the machine, so
// the hash covers the user too: two users running the same file get two
// pipes.
func pipeName(sid, abs string) string {
	return `\\.\pipe\kpf-` + hashName(sid+"\x00"+abs)
}

// sidPattern matches the string form of a SID, S-1-<authority>-<sub>...;
// it keeps pipeSDDL from building a descriptor out of anything else.
var sidPattern = regexp.MustCompile(`^S-1-[0-9]+(-[0-9]+)+$`)

// pipeSDDL is the security descriptor of the control pipe of the user
// whose SID is sid, in SDDL: the user owns the pipe (so a client can tell
// a pipe kpf up made from one another user made first) and a protected
// DACL, which inherits nothing, grants that user full access and no one
// else any: not other users, not administrators, not SYSTEM.
func pipeSDDL(sid string) (string, error) {
	if !sidPattern.MatchString(sid) {
		return "", fmt.Errorf("build the control pipe's security descriptor: %q is not a SID", sid)
	}
	return "O:" + sid + "D:P(A;;GA;;;" + sid + ")", nil
}
