package forward

import (
	"os"
	"strconv"
	"strings"
)

// hostBind is what a failed bind means on Linux: ports below
// net.ipv4.ip_unprivileged_port_start need root or CAP_NET_BIND_SERVICE,
// and all of 127.0.0.0/8 is on lo.
func hostBind() bindFacts { return linuxBind(unprivilegedPortStart()) }

// unprivilegedPortStart is the lowest port an unprivileged process may bind:
// Linux's net.ipv4.ip_unprivileged_port_start, else 1024.
func unprivilegedPortStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		return 1024
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 65536 {
		return 1024
	}
	return n
}
