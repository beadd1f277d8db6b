package control

import (
	"net"
	"syscall"
)

// peerOf tells who is on the other end of a Unix connection from its
// SO_PEERCRED credentials, which the kernel records at connect(2): allowed
// if it runs as this process's user or root. A peer whose credentials
// cannot be read is refused.
func peerOf(c net.Conn) peer {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peer{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return peer{}
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return peer{}
	}
	return uidPeer(cred.Uid)
}
