package cli

import (
	"os/exec"
	"testing"
	"time"
)

// An exited process that nobody has reaped yet (an orphan where init does
// not reap) has stopped: kpf down must not wait for it.
func TestProcessAliveTakesAZombieForGone(t *testing.T) {
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
