// Command kpf is a declarative port-forward supervisor for Kubernetes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kpf-dev/kpf/pkg/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore default handling so that a
		// second Ctrl-C kills the process.
		<-ctx.Done()
		stop()
	}()
	env := cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Name: cli.ProgramName(os.Args[0])}
	code := cli.Run(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}
