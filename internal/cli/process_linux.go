package cli

import (
	"bytes"
	"os"
	"strconv"
)

// processAlive reports whether a process with pid exists and has not
// exited: a zombie (exited, not yet reaped, as an orphan is where the
// init process does not reap) counts as gone.
func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses, so the
	// state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}
