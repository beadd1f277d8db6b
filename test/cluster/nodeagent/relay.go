package nodeagent

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultRelayImage is the image repository of kpf's relay. The agent runs
// no containers, except this one: a pod with a container whose image is
// in this repository (any tag or digest) runs Config.RelayBinary, the
// relay program built from kpf's repository, as a local process with the
// container's args, and a port-forward to the container's port reaches
// it. This is how the local cluster stands in for a container runtime for
// the one image kpf deploys.
const DefaultRelayImage = "ghcr.io/kpf-dev/kpf-relay"

// relayGrace is how long a relay process has to exit after SIGTERM before
// it is killed, as a pod's terminationGracePeriodSeconds would give it.
const relayGrace = 2 * time.Second

// relayProc is one relay container running as a local process.
type relayProc struct {
	container string
	port      int // the loopback port it listens on
	cmd       *exec.Cmd
	done      chan struct{} // closed when it has exited
	exitCode  int           // set before done is closed
	startedAt time.Time
}

// relays holds the relay processes by pod UID.
type relays struct {
	mu    sync.Mutex
	procs map[types.UID]*relayProc
}

// relayContainer returns the pod's relay container, if it has one.
func (a *Agent) relayContainer(pod *corev1.Pod) (corev1.Container, bool) {
	repo := a.cfg.RelayImage
	if repo == "" {
		repo = DefaultRelayImage
	}
	for _, c := range pod.Spec.Containers {
		if c.Image == repo || strings.HasPrefix(c.Image, repo+":") || strings.HasPrefix(c.Image, repo+"@") {
			return c, true
		}
	}
	return corev1.Container{}, false
}

// startRelay starts the pod's relay process unless it has one (running or
// exited). It returns an error worded as a kubelet's container start
// failure when the relay binary is missing.
func (a *Agent) startRelay(pod *corev1.Pod, c corev1.Container) error {
	a.relays.mu.Lock()
	defer a.relays.mu.Unlock()
	if _, ok := a.relays.procs[pod.UID]; ok {
		return nil
	}
	if _, err := os.Stat(a.cfg.RelayBinary); err != nil {
		return fmt.Errorf("relay image %s: no relay program at %q (install kpf-relay there)", c.Image, a.cfg.RelayBinary)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	// The container's args, then the loopback port this process listens
	// on instead of its port in a pod (the last --listen wins).
	args := append(append([]string{}, c.Args...), "--listen=127.0.0.1:"+strconv.Itoa(port))
	cmd := exec.Command(a.cfg.RelayBinary, args...)
	cmd.SysProcAttr = relaySysProcAttr()
	out, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start relay: %w", err)
	}
	p := &relayProc{container: c.Name, port: port, cmd: cmd, done: make(chan struct{}), startedAt: time.Now()}
	a.relays.procs[pod.UID] = p
	key := pod.Namespace + "/" + pod.Name
	a.cfg.Log.Info("started relay process", "pod", key, "pid", cmd.Process.Pid, "port", port)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			a.cfg.Log.Info("relay", "pod", key, "line", sc.Text())
		}
		cmd.Wait()
		p.exitCode = cmd.ProcessState.ExitCode()
		close(p.done)
		a.cfg.Log.Info("relay process exited", "pod", key, "code", p.exitCode)
		a.queue.Add(key) // its pod's status changes
	}()
	return nil
}

// stopRelay ends the pod's relay process, if any: SIGTERM, then SIGKILL
// after relayGrace. It does not wait.
func (a *Agent) stopRelay(uid types.UID) {
	a.relays.mu.Lock()
	p, ok := a.relays.procs[uid]
	delete(a.relays.procs, uid)
	a.relays.mu.Unlock()
	if !ok {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		select {
		case <-p.done:
		case <-time.After(relayGrace):
			p.cmd.Process.Kill()
		}
	}()
}

// stopAllRelays ends every relay process and waits for them.
func (a *Agent) stopAllRelays() {
	a.relays.mu.Lock()
	var procs []*relayProc
	for uid, p := range a.relays.procs {
		procs = append(procs, p)
		delete(a.relays.procs, uid)
	}
	a.relays.mu.Unlock()
	for _, p := range procs {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(relayGrace):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// relay returns the pod's relay process, if it has one.
func (a *Agent) relay(uid types.UID) (*relayProc, bool) {
	a.relays.mu.Lock()
	defer a.relays.mu.Unlock()
	p, ok := a.relays.procs[uid]
	return p, ok
}

// exited returns the process's exit code once it has exited.
func (p *relayProc) exited() (int, bool) {
	select {
	case <-p.done:
		return p.exitCode, true
	default:
		return 0, false
	}
}

// relayState is what the agent knows of a pod's relay container.
type relayState struct {
	container string // "" for a pod without one
	startErr  error  // why it could not start
	exited    bool
	exitCode  int
}

// relayStateOf returns the state of the pod's relay container.
func (a *Agent) relayStateOf(pod *corev1.Pod, startErr error) relayState {
	c, ok := a.relayContainer(pod)
	if !ok {
		return relayState{}
	}
	rs := relayState{container: c.Name, startErr: startErr}
	if p, ok := a.relay(pod.UID); ok {
		rs.exitCode, rs.exited = p.exited()
	}
	return rs
}

// apply sets the pod's phase, readiness and the relay container's state:
// waiting with the reason it could not start, or terminated with its exit
// code (the pod then Succeeded or Failed, as with restartPolicy Never).
func (rs relayState) apply(s *corev1.PodStatus, ready *bool) {
	if rs.container == "" {
		return
	}
	switch {
	case rs.startErr != nil:
		s.Phase = corev1.PodPending
	case rs.exited && rs.exitCode == 0:
		s.Phase = corev1.PodSucceeded
	case rs.exited:
		s.Phase = corev1.PodFailed
	default:
		return
	}
	*ready = false
}

// containerState returns the relay container's state, given its state so
// far.
func (rs relayState) containerState(old corev1.ContainerState) corev1.ContainerState {
	switch {
	case rs.startErr != nil:
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: rs.startErr.Error()}}
	case rs.exited:
		if old.Terminated != nil {
			return old
		}
		t := &corev1.ContainerStateTerminated{ExitCode: int32(rs.exitCode), Reason: "Completed", FinishedAt: metav1.Now()}
		if rs.exitCode != 0 {
			t.Reason = "Error"
		}
		if old.Running != nil {
			t.StartedAt = old.Running.StartedAt
		}
		return corev1.ContainerState{Terminated: t}
	case old.Running == nil:
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	}
	return old
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a port for the relay: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
