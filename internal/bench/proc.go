package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/testsupport"
)

// proc is a child process: a kpf up or a kubectl port-forward.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdout *testsupport.Buffer
	stderr *testsupport.Buffer
	done   chan struct{}
	err    error // set before done closes
	exited time.Time
}

// startProc starts bin with args (and extra environment). Cancelling ctx
// interrupts it, and kills it 5 s later if it has not exited.
func startProc(ctx context.Context, name string, env []string, bin string, args ...string) (*proc, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 5 * time.Second
	p := &proc{name: name, cmd: cmd, stdout: &testsupport.Buffer{}, stderr: &testsupport.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		p.exited = time.Now()
		close(p.done)
	}()
	return p, nil
}

// alive reports whether the process still runs.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop interrupts the process and waits for it, killing it after 5 s.
func (p *proc) stop() {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// kpfForward is one entry of a generated forwards.yaml.
type kpfForward struct {
	Name, Namespace, Service string
	// Host, when set instead of Service, makes a host: forward, which
	// kpf's relay carries.
	Host string
	// Ports are "local:servicePort" pairs.
	Ports []string
	// Spare is the forward's spare field; 0 leaves it out.
	Spare int
}

// writeKpfConfig writes a forwards.yaml for the forwards in dir, creating
// dir if needed.
func writeKpfConfig(dir, kubeContext string, fwds []kpfForward) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write kpf config: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "version: 1\ndefaults: {context: %s}\nforwards:\n", kubeContext)
	for _, f := range fwds {
		target := "service: " + f.Service
		if f.Host != "" {
			target = "host: " + f.Host
		}
		fmt.Fprintf(&b, "  - name: %s\n    namespace: %s\n    %s\n    ports: [%s]\n",
			f.Name, f.Namespace, target, `"`+strings.Join(f.Ports, `", "`)+`"`)
		if f.Spare > 0 {
			fmt.Fprintf(&b, "    spare: %d\n", f.Spare)
		}
	}
	path := filepath.Join(dir, "forwards.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("write kpf config: %w", err)
	}
	return path, nil
}

// kpfProc is a running kpf up and the socket it answers status on.
type kpfProc struct {
	*proc
	config string
	socket string
}

// startKpf runs `kpf up -f config --kubeconfig kubeconfig [extra...]`, with
// env added to its environment.
func startKpf(ctx context.Context, bin, config, kubeconfig string, env []string, extra ...string) (*kpfProc, error) {
	sock, err := control.SocketPath(config)
	if err != nil {
		return nil, fmt.Errorf("kpf status socket: %w", err)
	}
	p, err := startProc(ctx, "kpf up", env, bin, append([]string{"up", "-f", config, "--kubeconfig", kubeconfig}, extra...)...)
	if err != nil {
		return nil, err
	}
	return &kpfProc{proc: p, config: config, socket: sock}, nil
}

// status asks kpf up for its forwards' status, as kpf status -o json does.
func (k *kpfProc) status(ctx context.Context) (control.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	snap, err := control.Fetch(ctx, k.socket)
	if err != nil {
		return control.Snapshot{}, fmt.Errorf("kpf status: %w", err)
	}
	return snap, nil
}

// waitReady polls kpf's status every interval until all n forwards are
// ready, kpf exits or timeout passes.
func (k *kpfProc) waitReady(ctx context.Context, n int, interval, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	// last says what the last status showed, for the error.
	last := "no status yet"
	for {
		if !k.alive() {
			return fmt.Errorf("kpf up exited: %v\n%s", k.err, testsupport.LastLines(k.stderr.String(), 20))
		}
		snap, err := k.status(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case len(snap.Forwards) == n && snap.AllReady():
			return nil
		default:
			last = notReady(snap, n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d kpf forwards to be ready: %w; last status: %s\n%s", n, ctx.Err(), last, testsupport.LastLines(k.stderr.String(), 20))
		case <-t.C:
		}
	}
}

// notReady describes the forwards of snap that are not ready (the first
// five), and a count that differs from n.
func notReady(snap control.Snapshot, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d forwards (want %d)", len(snap.Forwards), n)
	shown := 0
	for _, f := range snap.Forwards {
		if f.State == control.StateReady || f.State == control.StateDisabled {
			continue
		}
		if shown++; shown <= 5 {
			fmt.Fprintf(&b, "; %s %s (%s) pod %q sessions %d", f.Name, f.State, f.Reason, f.Pod, f.Sessions)
		}
	}
	fmt.Fprintf(&b, "; %d not ready", shown)
	return b.String()
}

// kubectlProc is a running kubectl port-forward.
type kubectlProc struct {
	*proc
	ports []int
}

// startKubectl runs `kubectl port-forward svc/svc local:remote...` with
// the WebSocket or the SPDY transport, and waits until it forwards every
// port.
func startKubectl(ctx context.Context, kubeconfig, ns, svc string, websocket bool, pairs [][2]int, log *slog.Logger) (*kubectlProc, error) {
	args := []string{"--kubeconfig", kubeconfig, "-n", ns, "port-forward", "svc/" + svc}
	var ports []int
	for _, p := range pairs {
		args = append(args, fmt.Sprintf("%d:%d", p[0], p[1]))
		ports = append(ports, p[0])
	}
	env := []string{fmt.Sprintf("KUBECTL_PORT_FORWARD_WEBSOCKETS=%t", websocket)}
	p, err := startProc(ctx, "kubectl port-forward", env, "kubectl", args...)
	if err != nil {
		return nil, err
	}
	k := &kubectlProc{proc: p, ports: ports}
	err = poll(ctx, 30*time.Second, "kubectl port-forward to listen", func(context.Context) (bool, error) {
		if !k.alive() {
			return false, errors.New("kubectl exited: " + testsupport.LastLines(k.stderr.String(), 5))
		}
		out := k.stdout.String()
		for _, port := range ports {
			if !strings.Contains(out, fmt.Sprintf("Forwarding from 127.0.0.1:%d ", port)) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		k.stop()
		return nil, err
	}
	log.Debug("kubectl port-forward listening", "svc", ns+"/"+svc, "websocket", websocket, "pid", k.pid())
	return k, nil
}
