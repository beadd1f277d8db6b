//go:build unix

package statedir

import (
	"io/fs"
	"os"
	"syscall"
)

// ownerOf returns the uid that owns fi.
func ownerOf(fi fs.FileInfo) (uid int, known bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// RuntimeDirs returns the directories, best first, where kpf puts per-user
// runtime files such as the control socket: $XDG_RUNTIME_DIR/kpf (when
// $XDG_RUNTIME_DIR is an absolute path), else kpf-<uid> in the temporary
// directory, then /tmp/kpf-<uid>. It creates nothing; pass the one chosen
// to Private before use.
func RuntimeDirs() []string {
	return runtimeDirs(os.Getenv("XDG_RUNTIME_DIR"), os.TempDir(), os.Getuid())
}
