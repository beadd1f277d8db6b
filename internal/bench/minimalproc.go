package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// minimalCommand is kpf-bench's internal mode that runs the minimal
// forwarder in a process of its own. The benchmark starts it so that the
// floor it measures is a forwarder process, as kpf and kubectl are: run
// inside the benchmark process, the forwarder and the client that reads
// from it shared one Go runtime, and that alone made it ~15% faster
// (BENCHMARKS.md).
const minimalCommand = "minimal-forwarder"

// minimalListening starts the line the minimal forwarder process prints
// once it accepts connections, followed by its address.
const minimalListening = "listening on "

// runMinimalForwarder is the minimal-forwarder mode: it forwards a
// loopback port to a pod's port until ctx ends, and returns the exit
// code.
func runMinimalForwarder(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kpf-bench "+minimalCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `FILE` of the cluster")
	ns := fs.String("namespace", "", "the pod's `NAMESPACE`")
	pod := fs.String("pod", "", "the pod's `NAME`")
	port := fs.Int("port", 0, "the pod's `PORT`")
	useSPDY := fs.Bool("spdy", false, "the SPDY transport instead of WebSocket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *kubeconfig == "" || *ns == "" || *pod == "" || *port < 1 || *port > 65535 || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kpf-bench %s: want --kubeconfig, --namespace, --pod and --port (1-65535), and no arguments\n", minimalCommand)
		return 2
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "kpf-bench %s: %v\n", minimalCommand, err)
		return 1
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	m, err := startMinimal(cfg, *ns, *pod, *port, *useSPDY, log)
	if err != nil {
		fmt.Fprintf(stderr, "kpf-bench %s: %v\n", minimalCommand, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s%s\n", minimalListening, m.addr())
	<-ctx.Done()
	m.close()
	return 0
}

// startMinimalProc starts kpf-bench (self) in its minimal-forwarder mode
// to port of the pod and returns the process and the address it listens
// on.
func startMinimalProc(ctx context.Context, self, kubeconfig, ns, pod string, port int, useSPDY bool) (*proc, string, error) {
	args := []string{minimalCommand, "--kubeconfig", kubeconfig, "--namespace", ns, "--pod", pod, "--port", strconv.Itoa(port)}
	if useSPDY {
		args = append(args, "--spdy")
	}
	p, err := startProc(ctx, "minimal forwarder", nil, self, args...)
	if err != nil {
		return nil, "", err
	}
	var addr string
	err = poll(ctx, 30*time.Second, "the minimal forwarder to listen", func(context.Context) (bool, error) {
		if !p.alive() {
			return false, fmt.Errorf("the minimal forwarder exited: %v: %s", p.err, testsupport.LastLines(p.stderr.String(), 5))
		}
		out := p.stdout.String()
		_, rest, ok := strings.Cut(out, minimalListening)
		if !ok {
			return false, nil
		}
		addr, _, ok = strings.Cut(rest, "\n")
		return ok, nil
	})
	if err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}
