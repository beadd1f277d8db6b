//go:build unix && !linux && !darwin

package control

import "errors"

// peerUID fails: on this system kpf does not read a Unix connection's
// credentials, so every peer is refused (a control socket that cannot tell
// who calls serves no one). The socket's file mode keeps other users out
// anyway.
func peerUID(int) (uint32, error) {
	return 0, errors.New("peer credentials are not read on this system")
}
