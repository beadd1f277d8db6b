package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"sync"
	"time"

	"github.com/Microsoft/go-winio"
	"golang.org/x/sys/windows"
)

// userSID is the SID of the user this process runs as.
var userSID = sync.OnceValues(func() (*windows.SID, error) {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return nil, fmt.Errorf("read this process's user: %w", err)
	}
	return u.User.Sid.Copy()
})

// SocketPath is the control endpoint of the kpf up running configPath: on
// Windows the named pipe \\.\pipe\kpf-<hash>, where the hash covers the
// user's SID and the file's absolute path.
func SocketPath(configPath string) (string, error) {
	abs, err := configKey(configPath)
	if err != nil {
		return "", err
	}
	sid, err := userSID()
	if err != nil {
		return "", err
	}
	return pipeName(sid.String(), abs), nil
}

// Listen creates the control pipe named path, owned by this user and open
// to this user alone (pipeSDDL). A pipe of that name that answers as this
// user's means another kpf up runs the same file: Listen fails with
// ErrRunning. A pipe of that name that belongs to someone else is an
// error wrapping fs.ErrPermission: the name is taken, and kpf neither
// joins nor trusts it. A pipe has no file that outlives its process, so
// there is nothing stale to replace.
func Listen(path string) (net.Listener, error) {
	sid, err := userSID()
	if err != nil {
		return nil, err
	}
	sddl, err := pipeSDDL(sid.String())
	if err != nil {
		return nil, err
	}
	if running, err := probe(path); running || err != nil {
		return nil, cmpErr(err, ErrRunning)
	}
	// ListenPipe creates the pipe's first instance with FILE_CREATE, so it
	// fails if the name exists, however it came to: a pipe is never
	// shared with whoever created it first.
	ln, err := winio.ListenPipe(path, &winio.PipeConfig{SecurityDescriptor: sddl})
	if err != nil {
		// Another kpf up may have created it since the probe.
		if running, _ := probe(path); running {
			return nil, ErrRunning
		}
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ln, nil
}

// cmpErr returns err if it is not nil, else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

// probe tells whether a kpf up of this user answers on the pipe named
// path. Its error is for a pipe of that name that is someone else's.
func probe(path string) (running bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := dial(ctx, path)
	switch {
	case err == nil:
		c.Close()
		return true, nil
	case errors.Is(err, fs.ErrPermission):
		return false, fmt.Errorf("listen on %s: the name is taken: %w", path, err)
	default:
		return false, nil
	}
}

// dial connects to the control pipe named path, and checks that the pipe
// is owned by this user, as kpf up's pipes are: a pipe another user
// created first under the name (pipe squatting) is an error wrapping
// fs.ErrPermission, and is never sent a request. The connection does not
// let the server impersonate this process (go-winio dials with
// SECURITY_SQOS_PRESENT and anonymous impersonation).
func dial(ctx context.Context, path string) (net.Conn, error) {
	c, err := winio.DialPipeContext(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := checkOwner(c, path); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// checkOwner fails unless the pipe that c is connected to is owned by this
// user.
func checkOwner(c net.Conn, path string) error {
	f, ok := c.(interface{ Fd() uintptr })
	if !ok {
		return fmt.Errorf("control pipe %s: cannot read its owner", path)
	}
	me, err := userSID()
	if err != nil {
		return err
	}
	sd, err := windows.GetSecurityInfo(windows.Handle(f.Fd()), windows.SE_KERNEL_OBJECT, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("control pipe %s: read its owner: %w", path, err)
	}
	owner, _, err := sd.Owner()
	if err != nil || owner == nil {
		return fmt.Errorf("control pipe %s: read its owner: %w", path, cmpErr(err, errors.New("no owner")))
	}
	if !owner.Equals(me) {
		return fmt.Errorf("control pipe %s is owned by %s, not by you (%s): %w", path, owner, me, fs.ErrPermission)
	}
	return nil
}

// removeEndpoint does nothing: a pipe goes when its last handle closes.
func removeEndpoint(string) {}
