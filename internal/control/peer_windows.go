package control

import (
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/windows"
)

// peerOf tells who is on the other end of a control pipe connection.
//
// The pipe's DACL is the peer check: it grants access to this user's SID
// alone (pipeSDDL), so Windows itself refuses any other user when they
// open the pipe, before kpf sees a byte; no administrator or SYSTEM entry
// is granted either. This is a second look: the client's process id
// (GetNamedPipeClientProcessId) leads to its token's user, and a client
// found to run as another user is refused. A client whose token cannot be
// read (an elevated process seen from a non-elevated kpf up, say) is
// allowed, since the DACL already admitted it as this user.
func peerOf(c net.Conn) peer {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return peer{}
	}
	var pid uint32
	if err := windows.GetNamedPipeClientProcessId(windows.Handle(f.Fd()), &pid); err != nil {
		return peer{}
	}
	who := "process " + strconv.FormatUint(uint64(pid), 10)
	sid, err := processUser(pid)
	if err != nil {
		return peer{who: who, allowed: true}
	}
	me, err := userSID()
	if err != nil {
		return peer{who: who}
	}
	return peer{who: who + " of " + sid.String(), allowed: sid.Equals(me)}
}

// processUser returns the SID of the user process pid runs as.
func processUser(pid uint32) (*windows.SID, error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return nil, err
	}
	defer tok.Close()
	u, err := tok.GetTokenUser()
	if err != nil {
		return nil, err
	}
	return u.User.Sid.Copy()
}

func servedUsers() string {
	me := "this user"
	if sid, err := userSID(); err == nil {
		me = sid.String()
	}
	return fmt.Sprintf("it runs as %s, and its control pipe serves only that user", me)
}
