package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/appenv"
	"github.com/kpf-dev/kpf/internal/autoport"
	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/control"
)

const envLong = `Print the environment kpf gives applications: for each forward (or the
forwards and groups NAMEd), KPF_<NAME>_HOST, KPF_<NAME>_PORT and
KPF_<NAME>_ADDR for its first port, KPF_<NAME>_PORT_<REMOTE> for each
port by its number and by its name (as the service or container defines
it, once the running kpf up has resolved it), and the forward's own env:
variables. NAME is the forward's name upper-cased, with - and .
as _.

The ports come from the kpf up running the file, or from the file itself
when none runs. Only addresses and ports go in: nothing is read from the
cluster.`

const envExample = `  eval "$(kpf env)"
  kpf env --format dotenv > .env
  kpf env db -o json`

func newEnvCmd(env Env) *cobra.Command {
	var file, format string
	cmd := &cobra.Command{
		Use:               "env [NAME...]",
		Short:             "Print the forwards' addresses as environment variables",
		Long:              envLong,
		Example:           forName(env, envExample),
		ValidArgsFunction: completeNames(&file),
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runEnv(cmd.Context(), env, file, format, args))
		},
	}
	addFileFlag(cmd, &file, runningFileUsage)
	cmd.Flags().StringVarP(&format, "format", "o", "shell", "output `FORMAT`: shell (export lines, for eval), dotenv or json")
	cmd.RegisterFlagCompletionFunc("format", fixedValues(appenv.Formats...))
	return cmd
}

func runEnv(ctx context.Context, env Env, file, format string, names []string) int {
	cfg, _, ok := loadFile(env, file)
	if !ok {
		return ExitInvalid
	}
	path := cfg.File
	forwards, err := cfg.Select(names...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf env: %v\n", err)
		return ExitUsage
	}
	var snap *control.Snapshot
	if sock, err := control.SocketPath(path); err == nil {
		if s, err := control.Fetch(ctx, sock); err == nil {
			snap = &s
		}
	}
	var remembered map[string]uint16
	if store := portStore(path, slog.New(slog.DiscardHandler)); snap == nil && store != nil {
		remembered, _ = store.Load()
	}
	vars, err := appVars(forwards, snap, remembered)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf env: %v\n", err)
		return ExitInvalid
	}
	if err := appenv.Write(env.Stdout, format, vars); err != nil {
		fmt.Fprintf(env.Stderr, "kpf env: %v\n", err)
		return ExitUsage
	}
	return ExitOK
}

// appVars is the environment of forwards: their ports as the running kpf
// up reports them (snap), or as the file declares them when snap is nil
// (an automatic port as remembered, by autoport.Key). A forward that snap
// does not run, or an automatic port not picked yet, is an error: its
// port is not known.
func appVars(forwards []config.Forward, snap *control.Snapshot, remembered map[string]uint16) ([]appenv.Var, error) {
	var vars []appenv.Var
	for _, f := range forwards {
		af := appenv.Forward{Name: f.Name, Env: f.Env}
		if snap == nil {
			for _, m := range f.Ports {
				local := m.Local
				if m.Auto {
					if local = remembered[autoport.Key(f.Name, m)]; local == 0 {
						return nil, fmt.Errorf("forward %s: its automatic port for %s is picked by kpf up, which has not run it yet\n\thint: start it with kpf up -d", f.Name, m.Remote)
					}
				}
				remote := m.Remote.String()
				if m.Protocol == config.UDP {
					remote += "/udp"
				}
				af.Ports = append(af.Ports, appenv.Port{Local: net.JoinHostPort(f.Address, strconv.Itoa(int(local))), Remote: remote})
			}
		} else {
			running, ok := findForward(snap, f.Name)
			if !ok {
				return nil, fmt.Errorf("the kpf up running %s (pid %d) does not run %s\n\thint: kpf reload, or start it with kpf up %s", snap.Config, snap.PID, f.Name, f.Name)
			}
			for _, p := range running.Ports {
				// A UDP port's spellings carry /udp, as its Remote does.
				_, udp := strings.CutSuffix(p.Remote, "/udp")
				spell := func(s string) string {
					if udp && s != "" {
						return s + "/udp"
					}
					return s
				}
				var also []string
				if p.RemotePort != 0 {
					also = append(also, spell(strconv.Itoa(int(p.RemotePort))))
				}
				af.Ports = append(af.Ports, appenv.Port{Local: p.Local, Remote: p.Remote, Also: append(also, spell(p.RemoteName))})
			}
		}
		fv, err := appenv.Vars(af)
		if err != nil {
			return nil, err
		}
		vars = append(vars, fv...)
	}
	return vars, nil
}

// findForward returns the forward named name in snap.
func findForward(snap *control.Snapshot, name string) (control.Forward, bool) {
	for _, f := range snap.Forwards {
		if f.Name == name && f.State != control.StateDisabled {
			return f, true
		}
	}
	return control.Forward{}, false
}

// readyAmong reports whether every forward of forwards runs ready in snap.
func readyAmong(snap control.Snapshot, forwards []config.Forward) bool {
	for _, f := range forwards {
		if r, ok := findForward(&snap, f.Name); !ok || r.State != control.StateReady {
			return false
		}
	}
	return true
}

// environ is base with vars set, vars winning.
func environ(base []string, vars []appenv.Var) []string {
	set := map[string]bool{}
	for _, v := range vars {
		set[v.Name] = true
	}
	out := make([]string, 0, len(base)+len(vars))
	for _, kv := range base {
		if name, _, _ := strings.Cut(kv, "="); !set[name] {
			out = append(out, kv)
		}
	}
	for _, v := range vars {
		out = append(out, v.Name+"="+v.Value)
	}
	return out
}
