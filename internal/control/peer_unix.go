//go:build unix

package control

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

// peerOf tells who is on the other end of a Unix connection from the
// credentials the kernel recorded at connect(2), read by peerUID (one per
// system): allowed if it runs as this process's user or root. A peer whose
// credentials cannot be read is refused.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var uid uint32
	var uerr error
	if err := raw.Control(func(fd uintptr) { uid, uerr = peerUID(int(fd)) }); err != nil || uerr != nil {
		return peer{}
	}
	return uidPeer(uid)
}

// uidPeer is a peer running as uid: allowed if that is this process's
// user or root, whom a socket's file mode does not stop either.
func uidPeer(uid uint32) peer {
	return peer{who: "uid " + strconv.FormatUint(uint64(uid), 10), allowed: uid == uint32(os.Getuid()) || uid == 0}
}

func servedUsers() string {
	return fmt.Sprintf("it runs as uid %d, and its control socket serves only that user and root", os.Getuid())
}
