package cli

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kpf-dev/kpf/internal/suggest"
)

// flagError is a flag that cmd could not parse.
type flagError struct {
	cmd *cobra.Command
	err error
}

func (e *flagError) Error() string { return e.err.Error() }
func (e *flagError) Unwrap() error { return e.err }

// unknownFlag finds the flag name in pflag's "unknown flag: --bogus" and
// "unknown shorthand flag: 'x' in -x".
var unknownFlag = regexp.MustCompile(`^unknown (?:shorthand )?flag: (?:'(.)' in -\S*|--(\S+))$`)

// unknownCommand finds the word in cobra's `unknown command "x" for "kpf"`.
var unknownCommand = regexp.MustCompile(`^unknown command "([^"]*)" for "([^"]*)"`)

// reportUsageError prints one message for a bad command line: the cause,
// then a hint line with the likely intended word and where to read more.
// It never prints the whole usage text: the cause would scroll away.
func reportUsageError(env Env, root *cobra.Command, args []string, err error) {
	switch e := err.(type) {
	case *flagError:
		path := e.cmd.CommandPath()
		msg := e.err.Error()
		hint := fmt.Sprintf("%s --help lists the flags", path)
		if m := unknownFlag.FindStringSubmatch(msg); m != nil {
			if m[2] != "" {
				msg = "unknown flag --" + m[2]
				if s := suggest.Closest(m[2], flagNames(e.cmd)); s != "" {
					hint = fmt.Sprintf("did you mean --%s? (%s)", s, hint)
				}
			} else {
				msg = "unknown flag -" + m[1]
			}
		}
		fmt.Fprintf(env.Stderr, "%s: %s\n\thint: %s\n", path, msg, hint)
	case *argError:
		fmt.Fprintf(env.Stderr, "%s: %s\n\thint: %s --help shows the usage\n", e.cmd.CommandPath(), e.msg, e.cmd.CommandPath())
	default:
		msg := strings.SplitN(err.Error(), "\n", 2)[0]
		if m := unknownCommand.FindStringSubmatch(msg); m != nil {
			parent := root
			if c, _, ferr := root.Find(strings.Fields(strings.TrimPrefix(m[2], root.CommandPath()))); ferr == nil && c != nil {
				parent = c
			}
			hint := fmt.Sprintf("%s --help lists the commands", parent.CommandPath())
			if s := suggest.Closest(m[1], commandNames(parent)); s != "" {
				hint = fmt.Sprintf("did you mean %s %s? (%s)", parent.CommandPath(), s, hint)
			}
			fmt.Fprintf(env.Stderr, "%s: unknown command %q\n\thint: %s\n", parent.CommandPath(), m[1], hint)
			return
		}
		fmt.Fprintf(env.Stderr, "%s: %s\n", root.CommandPath(), msg)
	}
}

// flagNames lists the long flag names cmd accepts, its inherited ones
// included.
func flagNames(cmd *cobra.Command) []string {
	var names []string
	add := func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	}
	cmd.LocalFlags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	return names
}

// commandNames lists the visible subcommands of cmd, and their aliases.
func commandNames(cmd *cobra.Command) []string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			names = append(names, c.Name())
			names = append(names, c.Aliases...)
		}
	}
	return names
}
