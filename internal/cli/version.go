package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/buildinfo"
)

func newVersionCmd(env Env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print kpf's version, commit, build date, Go version and platform",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			info := buildinfo.Get()
			switch output {
			case "text":
				fmt.Fprintln(env.Stdout, info)
			case "json":
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			default:
				fmt.Fprintf(env.Stderr, "kpf version: unknown output format %q (want text or json)\n", output)
				return exitCode(ExitUsage)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output `FORMAT`: text or json")
	cmd.RegisterFlagCompletionFunc("output", fixedValues("text", "json"))
	return cmd
}

// versionText is what kpf --version prints: the line kpf version prints.
func versionText() string { return buildinfo.Get().String() + "\n" }
