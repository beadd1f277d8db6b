package cli

import (
	"github.com/spf13/cobra"
)

// kubeFlags are the kubeconfig flags shared by the commands that read it.
type kubeFlags struct {
	kubeconfig string
	context    string
}

// addFileFlag adds -f/--file, naming the forwards.yaml a command works on,
// and completes it with YAML files.
func addFileFlag(cmd *cobra.Command, file *string, usage string) {
	cmd.Flags().StringVarP(file, "file", "f", "", usage)
	cmd.MarkFlagFilename("file", "yaml", "yml")
}

// fileUsage is -f's help for commands that read the file themselves.
const fileUsage = "read `FILE` instead of the forwards.yaml found from the current directory up"

// runningFileUsage is -f's help for commands that talk to a kpf up.
const runningFileUsage = "the `FILE` kpf up runs (default: forwards.yaml found from the current directory up)"

// addKubeFlags adds --kubeconfig and --context, completing context names
// from the kubeconfig in use.
func addKubeFlags(cmd *cobra.Command, kf *kubeFlags) {
	cmd.Flags().StringVar(&kf.kubeconfig, "kubeconfig", "", "kubeconfig `PATH` (default: $KUBECONFIG, else ~/.kube/config)")
	cmd.Flags().StringVar(&kf.context, "context", "", "kube context `NAME` for forwards that name none (default: the kubeconfig's current-context)")
	cmd.MarkFlagFilename("kubeconfig")
	cmd.RegisterFlagCompletionFunc("context", completeContexts(&kf.kubeconfig))
}

// fixedValues completes a flag with one of values.
func fixedValues(values ...string) cobra.CompletionFunc {
	return func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return values, cobra.ShellCompDirectiveNoFileComp
	}
}
