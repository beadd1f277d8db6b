// Package cli implements the kpf command line: it parses arguments, wires
// the other packages together and turns results into output and exit codes.
// Only cmd/kpf's main exits the process.
//
// The command line follows kubectl's conventions, on the same library
// (github.com/spf13/cobra with pflag): flags anywhere on the line, --long
// and -s forms, `help CMD`, suggestions for mistyped commands and flags,
// and completion scripts for bash, zsh, fish and PowerShell that complete
// the forward and group names of the file in use.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes returned by Main.
const (
	ExitOK      = 0 // success
	ExitInvalid = 1 // the config is invalid or the command failed
	ExitUsage   = 2 // bad command line
)

// Env is what a command may use of the outside world.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Name is how the user invoked kpf: "kpf", or "kubectl kpf" when
	// kubectl runs it as a plugin. Help text and examples use it.
	Name string
}

// ProgramName returns the name to show for a process started as argv0:
// "kubectl kpf" when the binary is the kubectl plugin kubectl-kpf (kubectl
// runs plugins by that file name, krew links it so), else "kpf".
func ProgramName(argv0 string) string {
	// Cut at either separator: a Windows path is read the same way
	// whatever system the code runs on.
	base := argv0[strings.LastIndexAny(argv0, `/\`)+1:]
	base = strings.TrimSuffix(strings.ToLower(base), ".exe")
	if base == "kubectl-kpf" {
		return "kubectl kpf"
	}
	return "kpf"
}

// Main runs kpf, invoked as "kpf", with args (without the program name)
// and returns the exit code. ctx is cancelled on interrupt; long-running
// commands stop when it is done.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return Run(ctx, Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Name: "kpf"}, args)
}

// Run is Main with the whole environment given, the name included.
func Run(ctx context.Context, env Env, args []string) int {
	if env.Name == "" {
		env.Name = "kpf"
	}
	root := newRootCmd(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if code, ok := errors.AsType[exitCode](err); ok {
		return int(code)
	}
	// Everything else is cobra's: a bad command line.
	reportUsageError(env, root, args, err)
	return ExitUsage
}

// exitCode is the error a command returns to end with that exit status
// after it has printed its own messages.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// done turns a command's exit status into what RunE returns.
func done(code int) error {
	if code == ExitOK {
		return nil
	}
	return exitCode(code)
}

const rootLong = `kpf keeps the port-forwards declared in forwards.yaml running: pods
restarting or rolling, endpoints changing, the API server blipping and the
file being edited are all followed without you doing anything.

kpf finds forwards.yaml by walking up from the current directory, the way
git finds .git; -f names another file.`

const rootExample = `  kpf validate                 # check forwards.yaml, print the plan
  kpf up                       # start every forward; Ctrl-C stops them
  kpf up api db --once         # only these; exit 0 once they are ready
  kpf status -o json
  kpf completion bash --help   # set up shell completion`

// newRootCmd builds the command tree. To add a command, add a newXxxCmd
// constructor in its own file and list it here.
func newRootCmd(env Env) *cobra.Command {
	root := &cobra.Command{
		Use:     "kpf",
		Short:   "Keep the port-forwards declared in forwards.yaml running",
		Long:    rootLong,
		Example: forName(env, rootExample),
		Version: versionText(),
		// A bare "kpf" is a usage error: show what there is to run.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			cmd.SetOut(env.Stderr)
			cmd.Help()
			return exitCode(ExitUsage)
		},
		SilenceErrors:     true,
		SilenceUsage:      true,
		DisableAutoGenTag: true,
	}
	if env.Name != "kpf" {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: env.Name}
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetVersionTemplate("{{.Version}}")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return &flagError{cmd: cmd, err: err} })
	root.AddCommand(
		newUpCmd(env),
		newStatusCmd(env),
		newRestartCmd(env),
		newReloadCmd(env),
		newDownCmd(env),
		newLogsCmd(env),
		newEnvCmd(env),
		newExecCmd(env),
		newValidateCmd(env),
		newDoctorCmd(env),
		newSchemaCmd(env),
		newVersionCmd(env),
	)
	return root
}

// forName rewrites the "kpf " of example lines for the name kpf runs as.
func forName(env Env, example string) string {
	if env.Name == "kpf" {
		return example
	}
	lines := strings.Split(example, "\n")
	for i, l := range lines {
		trimmed := strings.TrimLeft(l, " ")
		if strings.HasPrefix(trimmed, "kpf ") {
			lines[i] = l[:len(l)-len(trimmed)] + env.Name + trimmed[len("kpf"):]
		}
	}
	return strings.Join(lines, "\n")
}

// noArgs is cobra.NoArgs with kpf's wording.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &argError{cmd: cmd, msg: fmt.Sprintf("unexpected argument %q", args[0])}
	}
	return nil
}

// argError is a wrong number of arguments for cmd.
type argError struct {
	cmd *cobra.Command
	msg string
}

func (e *argError) Error() string { return e.msg }
