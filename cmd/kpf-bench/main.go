// Command kpf-bench measures kpf against kubectl port-forward on the local
// cluster and writes bench/results/latest.{md,json}. Run it with
// `go tool -modfile=tools/go.mod task bench` (or `go tool -modfile=tools/go.mod task bench:smoke`) from the repository.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kpf-dev/kpf/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second Ctrl-C kills the process.
		<-ctx.Done()
		stop()
	}()
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
