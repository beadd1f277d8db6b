//go:build unix

package control

import (
	"fmt"
	"os"
	"strconv"
)

// uidPeer is a peer running as uid: allowed if that is this process's
// user or root, whom a socket's file mode does not stop either.
func uidPeer(uid uint32) peer {
	return peer{who: "uid " + strconv.FormatUint(uint64(uid), 10), allowed: uid == uint32(os.Getuid()) || uid == 0}
}

func servedUsers() string {
	return fmt.Sprintf("it runs as uid %d, and its control socket serves only that user and root", os.Getuid())
}
