// Command kpf-node-agent stands in for the kubelet of kpf's local test
// cluster. It is started by kpfcluster; see package nodeagent.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kpf-dev/kpf/test/cluster/nodeagent"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "kpf-node-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	nodeName := flag.String("node-name", "kpf-node", "name of the Node to register")
	listen := flag.String("listen", "127.0.0.1:10250", "address of the kubelet endpoint")
	certFile := flag.String("tls-cert", "", "serving certificate")
	keyFile := flag.String("tls-key", "", "serving key")
	relayBinary := flag.String("relay-binary", "", "the kpf-relay program that pods of the relay image run")
	relayImage := flag.String("relay-image", nodeagent.DefaultRelayImage, "the relay's image repository")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	klog.SetSlogLogger(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go dumpGoroutinesOnSignal(ctx)

	rest, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}
	rest.QPS, rest.Burst = 200, 400
	client, err := kubernetes.NewForConfig(rest)
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("load serving certificate: %w", err)
	}
	return nodeagent.Run(ctx, client, nodeagent.Config{
		NodeName:   *nodeName,
		ListenAddr: *listen,
		TLS:        &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Log:        log,

		RelayBinary: *relayBinary,
		RelayImage:  *relayImage,
	})
}

// dumpGoroutinesOnSignal writes every goroutine's stack to stderr (the
// agent's log) on each SIGUSR1, so that a test that finds a port-forward
// stuck can see where the agent is without stopping it.
func dumpGoroutinesOnSignal(ctx context.Context) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			fmt.Fprintln(os.Stderr, "=== goroutine dump (SIGUSR1)")
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
			fmt.Fprintln(os.Stderr, "=== end of goroutine dump")
		}
	}
}
