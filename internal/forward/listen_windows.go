package forward

import "golang.org/x/sys/windows"

// hostBind is what a failed bind means on Windows: Winsock's error codes,
// no privileged ports, but ranges of ports the system excludes.
func hostBind() bindFacts { return windowsBind() }

// The Winsock codes of listen.go are Windows's: each array length is zero
// only if the two agree, else this file does not compile.
var (
	_ [wsaEACCES - windows.WSAEACCES]struct{}                   = [0]struct{}{}
	_ [wsaEPROTONOSUPPORT - windows.WSAEPROTONOSUPPORT]struct{} = [0]struct{}{}
	_ [wsaEAFNOSUPPORT - windows.WSAEAFNOSUPPORT]struct{}       = [0]struct{}{}
	_ [wsaEADDRINUSE - windows.WSAEADDRINUSE]struct{}           = [0]struct{}{}
	_ [wsaEADDRNOTAVAIL - windows.WSAEADDRNOTAVAIL]struct{}     = [0]struct{}{}
)
