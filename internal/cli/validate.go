package cli

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kpf-dev/kpf/internal/config"
)

const validateLong = `Check forwards.yaml and print every problem found, or, if there is none,
the resolved plan: one row per port mapping, with defaults applied and the
kube context of forwards that name none resolved from the kubeconfig.
Only the kubeconfig is read; no cluster is contacted.

Exit status is 0 for a valid file (warnings allowed), 1 for an invalid one
and 2 for a bad command line.`

const validateExample = `  kpf validate
  kpf validate -f ~/work/forwards.yaml
  kpf validate --kubeconfig ~/.kube/lab.yaml --context lab`

func newValidateCmd(env Env) *cobra.Command {
	var file string
	var kf kubeFlags
	cmd := &cobra.Command{
		Use:     "validate",
		Short:   "Check forwards.yaml and print the resolved plan",
		Long:    validateLong,
		Example: forName(env, validateExample),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runValidate(env, file, kf))
		},
	}
	addFileFlag(cmd, &file, fileUsage)
	addKubeFlags(cmd, &kf)
	return cmd
}

func runValidate(env Env, file string, kf kubeFlags) int {
	cfg, warns, ok := loadFile(env, file)
	if !ok {
		return ExitInvalid
	}

	kc, err := loadKubeconfig(kf.kubeconfig)
	if err != nil {
		if kf.kubeconfig != "" {
			fmt.Fprintf(env.Stderr, "kpf: %v\n", err)
			return ExitInvalid
		}
		fmt.Fprintf(env.Stderr, "kpf: warning: %v\n", err)
	}
	warns = append(warns, kc.unknownContexts(cfg)...)
	slices.SortStableFunc(warns, func(a, b config.Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Col, b.Pos.Col))
	})
	for _, w := range warns {
		fmt.Fprintln(env.Stderr, w.String())
	}
	if kf.context != "" && kc.available && !kc.names[kf.context] {
		fmt.Fprintf(env.Stderr, "kpf: warning: --context %q not found in kubeconfig\n", kf.context)
	}
	current := cmp.Or(kf.context, kc.current, "(current-context)")
	if err := printPlan(env.Stdout, cfg, current); err != nil {
		fmt.Fprintf(env.Stderr, "kpf: %v\n", err)
		return ExitInvalid
	}
	return ExitOK
}

// kubeContexts is what validate needs from the kubeconfig.
type kubeContexts struct {
	// available is false when no kubeconfig was found.
	available bool
	current   string
	names     map[string]bool
}

// loadKubeconfig reads the kubeconfig with kubectl's loading rules: the
// explicit path, else the $KUBECONFIG list, else ~/.kube/config. A missing
// default kubeconfig is not an error; it leaves available false.
func loadKubeconfig(explicit string) (kubeContexts, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = explicit
	raw, err := rules.Load()
	if err != nil {
		return kubeContexts{}, fmt.Errorf("load kubeconfig: %w", err)
	}
	kc := kubeContexts{
		available: len(raw.Contexts) > 0 || raw.CurrentContext != "",
		current:   raw.CurrentContext,
		names:     map[string]bool{},
	}
	for name := range raw.Contexts {
		kc.names[name] = true
	}
	return kc, nil
}

// unknownContexts warns, once per place it is written, about each context
// named in cfg that the kubeconfig does not have.
func (kc kubeContexts) unknownContexts(cfg *config.Config) []config.Diagnostic {
	if !kc.available {
		return nil
	}
	known := slices.Sorted(maps.Keys(kc.names))
	hint := "known contexts: " + strings.Join(known, ", ")
	if len(known) == 0 {
		hint = ""
	}
	var out []config.Diagnostic
	seen := map[string]bool{}
	for i, f := range cfg.Forwards {
		if f.Context == "" || kc.names[f.Context] {
			continue
		}
		path := "forwards[" + strconv.Itoa(i) + "].context"
		pos, ok := cfg.Position(path)
		if !ok {
			path = "defaults.context"
			pos, _ = cfg.Position(path)
		}
		if seen[path] {
			continue
		}
		seen[path] = true
		out = append(out, config.Diagnostic{
			Pos:      pos,
			Path:     path,
			Message:  fmt.Sprintf("context %q not found in kubeconfig", f.Context),
			Hint:     hint,
			Severity: config.SeverityWarning,
		})
	}
	return out
}

// printPlan writes the resolved plan: a header line and a table with one
// row per port mapping. current replaces an empty context.
func printPlan(w io.Writer, cfg *config.Config, current string) error {
	enabled := 0
	for _, f := range cfg.Forwards {
		if f.Enabled {
			enabled++
		}
	}
	noun := "forwards"
	if len(cfg.Forwards) == 1 {
		noun = "forward"
	}
	fmt.Fprintf(w, "%s: %d %s (%d enabled)\n", cfg.File, len(cfg.Forwards), noun, enabled)
	if len(cfg.Forwards) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCONTEXT\tNAMESPACE\tTARGET\tLOCAL\tREMOTE")
	for _, f := range cfg.Forwards {
		name := f.Name
		if !f.Enabled {
			name += " (disabled)"
		}
		row := []string{name, cmp.Or(f.Context, current), f.Namespace, f.Target.String()}
		for j, pm := range f.Ports {
			if j > 0 {
				row = []string{"", "", "", ""}
			}
			local := net.JoinHostPort(f.Address, strconv.Itoa(int(pm.Local)))
			if pm.Auto {
				local = net.JoinHostPort(f.Address, "auto")
			}
			remote := pm.Remote.String()
			if pm.Protocol == config.UDP {
				remote += "/udp"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.Join(row, "\t"), local, remote)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print plan: %w", err)
	}
	if p := cfg.Proxy; p != nil {
		var listen []string
		if p.SOCKS5 != "" {
			listen = append(listen, "socks5 "+p.SOCKS5)
		}
		if p.HTTP != "" {
			listen = append(listen, "http "+p.HTTP)
		}
		contexts := make([]string, len(p.Contexts))
		for i, c := range p.Contexts {
			contexts[i] = cmp.Or(c, current)
		}
		fmt.Fprintf(w, "proxy: %s → namespaces %s in contexts %s\n", strings.Join(listen, ", "),
			strings.Join(p.Namespaces, ", "), strings.Join(contexts, ", "))
	}
	return nil
}

// loadFile reads and validates file, or the forwards.yaml found from the
// current directory up, and returns it with its warnings; on failure it
// prints the problems, each with its FILE:LINE:COL, and returns false.
func loadFile(env Env, file string) (*config.Config, []config.Diagnostic, bool) {
	path := file
	if path == "" {
		var err error
		if path, err = config.Find("."); err != nil {
			fmt.Fprintf(env.Stderr, "kpf: %v\n\thint: create one, or name it with -f FILE\n", err)
			return nil, nil, false
		}
	}
	cfg, warns, err := config.Load(path)
	if err != nil {
		if cerr, ok := errors.AsType[*config.Error](err); ok {
			fmt.Fprintln(env.Stderr, cerr.Error())
		} else {
			fmt.Fprintf(env.Stderr, "kpf: %v\n", err)
		}
		return nil, nil, false
	}
	return cfg, warns, true
}
