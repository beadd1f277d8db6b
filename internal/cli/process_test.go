//go:build unix

package cli

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if processAlive(cmd.Process.Pid) {
		t.Fatalf("process %d, which exited and was reaped, is alive", cmd.Process.Pid)
	}
}

// An exited process that nobody has reaped yet (an orphan where init does
// not reap) has stopped: kpf down must not wait for it.
func TestProcessAliveTakesAZombieForGone(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc: zombies count as alive on this system")
	}
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	// Not reaped until Wait: once it has exited it is a zombie.
	for range 1000 {
		if !processAlive(cmd.Process.Pid) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("an exited, unreaped process still counts as alive after 5 s")
}
