package cli

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/config"
)

// completeNames completes the forward and group names of the file a
// command would use: *file (the -f flag) if set, else forwards.yaml found
// from the current directory up. Names already on the line are left out.
// A file that cannot be read or is invalid completes nothing: completion
// must never print errors into the user's shell.
func completeNames(file *string) cobra.CompletionFunc {
	return func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		path := *file
		if path == "" {
			var err error
			if path, err = config.Find("."); err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		cfg, _, err := config.Load(path)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return nameCompletions(cfg, args, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// nameCompletions lists cfg's forward names (described by their target)
// and group names (described by their members) that start with prefix and
// are not in used.
func nameCompletions(cfg *config.Config, used []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	groups := map[string][]string{}
	var groupOrder []string
	for _, f := range cfg.Forwards {
		for _, g := range f.Groups {
			if _, ok := groups[g]; !ok {
				groupOrder = append(groupOrder, g)
			}
			groups[g] = append(groups[g], f.Name)
		}
		if strings.HasPrefix(f.Name, prefix) && !slices.Contains(used, f.Name) {
			desc := f.Target.String()
			if !f.Enabled {
				desc += " (disabled)"
			}
			out = append(out, cobra.CompletionWithDesc(f.Name, desc))
		}
	}
	for _, g := range groupOrder {
		if strings.HasPrefix(g, prefix) && !slices.Contains(used, g) {
			out = append(out, cobra.CompletionWithDesc(g, "group: "+strings.Join(groups[g], ", ")))
		}
	}
	return out
}

// completeContexts completes context names from the kubeconfig that
// *kubeconfig names, or the default one.
func completeContexts(kubeconfig *string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = *kubeconfig
		raw, err := rules.Load()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var out []cobra.Completion
		for name := range raw.Contexts {
			if strings.HasPrefix(name, toComplete) {
				out = append(out, name)
			}
		}
		slices.Sort(out)
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}
