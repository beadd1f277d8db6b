package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"

	"github.com/kpf-dev/kpf/internal/config"
)

// familyMissing reports whether a bind failed because the host lacks the
// address or its whole family, rather than because of a conflict or a
// permission.
func familyMissing(err error) bool {
	le, ok := errors.AsType[*listenError](err)
	return ok && (le.problem == bindNoAddress || le.problem == bindNoFamily)
}

// listenError is a failure to bind a local address, told in words a user
// acts on.
type listenError struct {
	addr    string // "127.0.0.1:8080"
	problem bindProblem
	msg     string
	err     error
}

func (e *listenError) Error() string { return e.addr + ": " + e.msg }
func (e *listenError) Unwrap() error { return e.err }

// bindError translates the error of listening on addr for mapping m, in
// the words of the operating system kpf runs on.
func bindError(addr string, m config.PortMapping, err error) error {
	return bindErrorOn(hostBind(), addr, m, err)
}

// bindProblem is what a failed bind means, whatever the system's error.
type bindProblem int

const (
	bindOther     bindProblem = iota
	bindInUse                 // another socket holds the port
	bindDenied                // the system refused: privileges, reserved ports, policy
	bindNoAddress             // the host has no such address
	bindNoFamily              // the host has no IPv4 or no IPv6 at all
)

// bindErrnos are the system errors of a failed bind, by what they mean.
// Windows reports Winsock's own codes (WSAEADDRINUSE, 10048, and so on):
// there syscall.EADDRINUSE and its kind are numbers Go made up, which no
// system call returns.
type bindErrnos map[bindProblem][]syscall.Errno

// Winsock's error codes (winerror.h), spelled out so that the Windows
// classification is testable on any system; listen_windows.go checks them
// against golang.org/x/sys/windows.
const (
	wsaEACCES          syscall.Errno = 10013
	wsaEPROTONOSUPPORT syscall.Errno = 10043
	wsaEAFNOSUPPORT    syscall.Errno = 10047
	wsaEADDRINUSE      syscall.Errno = 10048
	wsaEADDRNOTAVAIL   syscall.Errno = 10049
)

var (
	unixErrnos = bindErrnos{
		bindInUse:     {syscall.EADDRINUSE},
		bindDenied:    {syscall.EACCES},
		bindNoAddress: {syscall.EADDRNOTAVAIL},
		bindNoFamily:  {syscall.EAFNOSUPPORT, syscall.EPROTONOSUPPORT},
	}
	winsockErrnos = bindErrnos{
		bindInUse:     {wsaEADDRINUSE},
		bindDenied:    {wsaEACCES},
		bindNoAddress: {wsaEADDRNOTAVAIL},
		bindNoFamily:  {wsaEAFNOSUPPORT, wsaEPROTONOSUPPORT},
	}
)

// classify says what err, returned by a bind, means.
func (e bindErrnos) classify(err error) bindProblem {
	for _, p := range []bindProblem{bindInUse, bindDenied, bindNoAddress, bindNoFamily} {
		for _, errno := range e[p] {
			if errors.Is(err, errno) {
				return p
			}
		}
	}
	return bindOther
}

// bindFacts is what a failed bind means on one operating system, and how
// to say so. hostBind (in listen_GOOS.go) returns the host's; the
// constructors below take every fact as a parameter, so that each system's
// words can be tested on any system.
type bindFacts struct {
	os     string // "linux", "darwin", "windows", or "" for another Unix
	errnos bindErrnos
	// privilegedBelow is the first port an unprivileged process may bind:
	// Linux's net.ipv4.ip_unprivileged_port_start, 1024 elsewhere on Unix
	// (macOS: for specific addresses only), 0 on Windows, which reserves
	// no ports for administrators.
	privilegedBelow int
}

func linuxBind(unprivilegedPortStart int) bindFacts {
	return bindFacts{os: "linux", errnos: unixErrnos, privilegedBelow: unprivilegedPortStart}
}

func darwinBind() bindFacts {
	return bindFacts{os: "darwin", errnos: unixErrnos, privilegedBelow: 1024}
}

func windowsBind() bindFacts {
	return bindFacts{os: "windows", errnos: winsockErrnos}
}

func otherUnixBind() bindFacts {
	return bindFacts{errnos: unixErrnos, privilegedBelow: 1024}
}

// bindErrorOn is bindError on the system that f describes.
func bindErrorOn(f bindFacts, addr string, m config.PortMapping, err error) error {
	host, _, _ := net.SplitHostPort(addr)
	ip, _ := netip.ParseAddr(host)
	problem := f.errnos.classify(err)
	var msg string
	switch problem {
	case bindInUse:
		msg = fmt.Sprintf("local port %d is already in use by another process (stop it, or pick another local port; %s shows which process)",
			m.Local, f.portHolderCommand(m.Local))
	case bindDenied:
		msg = f.deniedMessage(ip, m, err)
	case bindNoAddress:
		msg = f.noAddressMessage(ip)
	case bindNoFamily:
		msg = fmt.Sprintf("%s is not available on this host", family(ip))
	default:
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return &listenError{addr: addr, problem: problem, msg: msg, err: err}
}

func family(ip netip.Addr) string {
	if ip.Is6() {
		return "IPv6"
	}
	return "IPv4"
}

// portHolderCommand is the command that shows which process listens on
// port.
func (f bindFacts) portHolderCommand(port uint16) string {
	switch f.os {
	case "linux":
		return fmt.Sprintf("`ss -ltnp 'sport = :%d'`", port)
	case "windows":
		return fmt.Sprintf("`netstat -ano | findstr :%d`", port)
	default:
		return fmt.Sprintf("`lsof -nP -iTCP:%d -sTCP:LISTEN`", port)
	}
}

// deniedMessage explains a bind the system refused.
func (f bindFacts) deniedMessage(ip netip.Addr, m config.PortMapping, err error) string {
	port := int(m.Local)
	switch {
	case f.os == "windows":
		// Windows has no privileged ports. WSAEACCES means the port lies
		// in a range the system excluded (Hyper-V, WSL 2, Docker Desktop
		// and WinNAT reserve ranges of ports) or another socket holds it
		// with SO_EXCLUSIVEADDRUSE.
		v := "ipv4"
		if ip.Is6() {
			v = "ipv6"
		}
		return fmt.Sprintf("Windows refused local port %d: it is in a range of ports the system reserves (often for Hyper-V, WSL 2 or Docker; "+
			"`netsh interface %s show excludedportrange protocol=tcp` lists them), or another program holds it with exclusive access (pick another local port)",
			port, v)
	case f.os == "darwin" && port < f.privilegedBelow && !ip.IsUnspecified():
		// Since Mojave, macOS lets anyone bind a port below 1024 on the
		// wildcard address only; a specific address, loopback included,
		// still needs root.
		return fmt.Sprintf("local port %d is privileged: macOS lets only root bind a port below %d to a specific address such as %s "+
			"(pick a local port of %d or more, such as %q)", port, f.privilegedBelow, ip, f.privilegedBelow, suggestPort(m, f.privilegedBelow))
	case f.os == "darwin":
		return fmt.Sprintf("macOS denied binding local port %d, which is not privileged (%v): security software or a sandbox may be keeping kpf from listening",
			port, errors.Unwrap(err))
	case port < f.privilegedBelow:
		needs := "root"
		if f.os == "linux" {
			needs = "root or CAP_NET_BIND_SERVICE"
		}
		return fmt.Sprintf("local port %d is privileged: binding a port below %d needs %s (pick a local port of %d or more, such as %q)",
			port, f.privilegedBelow, needs, f.privilegedBelow, suggestPort(m, f.privilegedBelow))
	default:
		return fmt.Sprintf("permission denied binding local port %d (%v)", port, errors.Unwrap(err))
	}
}

// noAddressMessage explains a bind to an address the host does not have.
func (f bindFacts) noAddressMessage(ip netip.Addr) string {
	switch {
	case f.os == "darwin" && ip.Is4() && ip.IsLoopback() && ip != netip.AddrFrom4([4]byte{127, 0, 0, 1}):
		// Linux and Windows answer on all of 127.0.0.0/8; macOS's lo0 has
		// only 127.0.0.1 until an alias is added.
		return fmt.Sprintf("%s is not an address of this Mac: its loopback interface lo0 has only 127.0.0.1 "+
			"(add it with `sudo ifconfig lo0 alias %s up`, which lasts until the Mac restarts, or use 127.0.0.1)", ip, ip)
	case ip.IsLoopback():
		return fmt.Sprintf("%s is not an address of this host: it has no %s loopback (use address: localhost to listen on whichever loopback address it has)", ip, family(ip))
	default:
		return fmt.Sprintf("%s is not an address of this host (use one of its addresses, or localhost)", ip)
	}
}

// suggestPort proposes a mapping of m to a local port of first or more:
// 80 becomes "8080:80".
func suggestPort(m config.PortMapping, first int) string {
	local := int(m.Local) + 8000
	if local < first || local > 65535 {
		local = 8080
	}
	return strconv.Itoa(local) + ":" + m.Remote.String()
}
