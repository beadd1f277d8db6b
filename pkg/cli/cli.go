// Package cli implements the kpf command line: it parses arguments, wires
// the other packages together and turns results into output and exit codes.
// Only cmd/kpf's main exits the process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes returned by Main.
const (
	ExitOK      = 0 // success
	ExitInvalid = 1 // the config is invalid or the command failed
	ExitUsage   = 2 // bad command line
)

// Env is what a subcommand may use of the outside world.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// command is one subcommand. run gets the arguments after the subcommand's
// name and returns the exit code.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env Env, args []string) int
}

// commands returns the subcommand table. To add a subcommand, add a row
// here and a runNAME function in its own file.
func commands() []command {
	return []command{
		{"up", "start the declared forwards and keep them running", runUp},
		{"status", "show the forwards of the running kpf up", runStatus},
		{"restart", "re-dial forwards of the running kpf up", runRestart},
		{"validate", "check forwards.yaml and print the resolved plan", runValidate},
		{"version", "print kpf's version", runVersion},
	}
}

const usage = `kpf keeps the port-forwards declared in forwards.yaml running.

Usage:
    kpf COMMAND [FLAGS]

Commands:
%s
Run "kpf COMMAND -h" for a command's flags.

Examples:
    $ kpf validate
    $ kpf validate -f deploy/forwards.yaml --context staging
    $ kpf version

kpf finds forwards.yaml by walking up from the current directory, the way
git finds .git; -f names another file.
`

func printUsage(w io.Writer) {
	var b strings.Builder
	for _, c := range commands() {
		fmt.Fprintf(&b, "    %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, usage, b.String())
}

// Main runs kpf with args (without the program name) and returns the exit
// code. ctx is cancelled on interrupt; long-running commands stop when it
// is done.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	env := Env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	if len(args) == 0 {
		printUsage(stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		printUsage(stdout)
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	fmt.Fprintf(stderr, "kpf: unknown command %q\n", args[0])
	printUsage(stderr)
	return ExitUsage
}

// newFlagSet returns a FlagSet for a subcommand that prints text as its
// usage, followed by the flag defaults.
func newFlagSet(env Env, name, text string) *flag.FlagSet {
	fs := flag.NewFlagSet("kpf "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), text)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and returns the exit code to return at once, or -1
// to go on. -h prints usage and succeeds; other flag errors are usage errors.
func parseFlags(fs *flag.FlagSet, args []string) int {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	case err != nil:
		return ExitUsage
	}
	return -1
}
