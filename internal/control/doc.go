// Package control is kpf up's local API: HTTP served on a private local
// endpoint, one per config file, never on TCP. Only the user who runs kpf
// up can read its status or steer it (restart a forward, reload the file).
//
// The endpoint and its peer check depend on the system:
//
//   - Linux: a Unix socket, $XDG_RUNTIME_DIR/kpf/<hash>.sock, else
//     <tmp>/kpf-<uid>/<hash>.sock, with mode 0600 in a 0700 directory.
//     Each connection's peer is read with SO_PEERCRED; a peer that is
//     neither this process's user nor root is answered 403 with a message
//     saying why, even if someone loosened the modes.
//   - macOS (and other Unix systems): the same socket layout; the peer is
//     read with LOCAL_PEERCRED on macOS. A socket path must fit sun_path
//     (103 bytes on macOS, 107 on Linux) and macOS's $TMPDIR is long, so
//     when the preferred directory would make the path too long the socket
//     goes to /tmp/kpf-<uid>/ instead, whose path always fits. A directory
//     that exists already is used only if it is a real directory owned by
//     the user with mode 0700 (see internal/statedir); kpf never adopts or
//     chmods one that someone else prepared.
//   - Windows: a named pipe, \\.\pipe\kpf-<hash>, where the hash covers the
//     user's SID and the config path (pipe names are global to the
//     machine). The pipe's security descriptor makes the user its owner
//     and grants access to that user alone, so the system refuses anyone
//     else when they open it: the DACL is the peer check. kpf up also
//     looks up each client process's user and refuses one that is another
//     user's, and clients check that the pipe is owned by their own user
//     before they talk, so a pipe created first by another user (pipe
//     squatting) is refused rather than trusted. Creating the pipe fails if
//     its name exists, so two kpf ups cannot share one.
//
// On every system a second kpf up for the same file finds the first one
// answering and stops with ErrRunning; a Unix socket left by a kpf up that
// died is replaced.
//
// The API is GET /v1/status, POST /v1/forwards/{name}/restart,
// POST /v1/reload and GET /healthz; Fetch, Restart and Reload are its
// clients.
package control
