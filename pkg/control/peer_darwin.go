package control

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerOf tells who is on the other end of a Unix connection from its
// LOCAL_PEERCRED credentials (struct xucred, see unix(4)), which the
// kernel records at connect(2): allowed if it runs as this process's user
// or root. A peer whose credentials cannot be read is refused.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *unix.Xucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil || cerr != nil {
		return peer{}
	}
	return uidPeer(cred.Uid)
}
