//go:build !linux && !darwin && !windows

package forward

// hostBind is what a failed bind means on another Unix (the BSDs): ports
// below 1024 need root.
func hostBind() bindFacts { return otherUnixBind() }
