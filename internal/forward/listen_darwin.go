package forward

// hostBind is what a failed bind means on macOS: ports below 1024 need
// root on a specific address (not on the wildcard one, since Mojave), and
// lo0 has only 127.0.0.1 of 127.0.0.0/8.
func hostBind() bindFacts { return darwinBind() }
