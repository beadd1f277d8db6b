package control

import "golang.org/x/sys/unix"

// peerUID reads the peer's user from LOCAL_PEERCRED (struct xucred, see
// unix(4)).
func peerUID(fd int) (uint32, error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, err
	}
	return cred.Uid, nil
}
