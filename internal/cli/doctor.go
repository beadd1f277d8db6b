package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/doctor"
	"github.com/kpf-dev/kpf/internal/kube"
)

const doctorLong = `Check, before kpf up, that the forwards of forwards.yaml (or only the
forwards and groups named) can work here, and print one line per check,
✔ or ✘, with the cause and what to do for each failure:

  the kubeconfig files found;
  for each context: defined, its API server reached (with the time it
    took), the credentials accepted (an exec credential plugin runs once),
    the server's version;
  for each namespace: it exists, and you may do what kpf needs there
    (asked with SelfSubjectAccessReview; docs/rbac.md has the Role);
  for each forward: the target exists, has ready pods and resolves each
    remote port; each local port is free;
  the proxy addresses are free.

doctor only reads: it never changes anything in a cluster.

Exit status is 0 when every check passes (warnings allowed), 1 when one
fails or the file is invalid, 2 for a bad command line.`

const doctorExample = `  kpf doctor
  kpf doctor api db
  kpf doctor -o json     # for CI`

type doctorFlags struct {
	file    string
	kube    kubeFlags
	output  string
	timeout time.Duration
}

func newDoctorCmd(env Env) *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:               "doctor [NAME...]",
		Short:             "Check that the declared forwards can work, and say what to fix",
		Long:              doctorLong,
		Example:           forName(env, doctorExample),
		ValidArgsFunction: completeNames(&f.file),
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runDoctor(cmd.Context(), env, f, args))
		},
	}
	fl := cmd.Flags()
	addFileFlag(cmd, &f.file, fileUsage)
	addKubeFlags(cmd, &f.kube)
	fl.StringVarP(&f.output, "output", "o", "table", "output `FORMAT`: table or json")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for each answer of an API server")
	cmd.RegisterFlagCompletionFunc("output", fixedValues("table", "json"))
	return cmd
}

func runDoctor(ctx context.Context, env Env, f doctorFlags, names []string) int {
	if f.output != "table" && f.output != "json" {
		fmt.Fprintf(env.Stderr, "kpf doctor: unknown output format %q (want table or json)\n", f.output)
		return ExitUsage
	}
	cfg, _, ok := loadFile(env, f.file)
	if !ok {
		return ExitInvalid
	}
	forwards, err := cfg.Select(names...)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf doctor: %v\n", err)
		return ExitUsage
	}
	opts := doctor.Options{Config: cfg, Forwards: forwards, DefaultContext: f.kube.context, Timeout: f.timeout,
		Running: runningSupervisor(ctx, cfg.File)}
	opts.Kubeconfig, opts.KubeconfigErr = kube.LoadKubeconfig(f.kube.kubeconfig)
	rep := doctor.Run(ctx, opts)

	if f.output == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return ExitInvalid
		}
	} else {
		printDoctor(env.Stdout, rep)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(env.Stderr, "kpf doctor: interrupted")
		return ExitInvalid
	}
	if !rep.OK {
		return ExitInvalid
	}
	return ExitOK
}

// runningSupervisor returns the kpf up running path, or nil if none
// answers within a second.
func runningSupervisor(ctx context.Context, path string) *doctor.Running {
	sock, err := control.SocketPath(path)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	snap, err := control.Fetch(ctx, sock)
	if err != nil {
		return nil
	}
	r := &doctor.Running{PID: snap.PID}
	for _, f := range snap.Forwards {
		if f.State != control.StateDisabled {
			r.Forwards = append(r.Forwards, f.Name)
		}
	}
	return r
}

// doctorMarks are the marks of each outcome.
var doctorMarks = map[doctor.Status]string{
	doctor.OK:      "✔",
	doctor.Failed:  "✘",
	doctor.Warning: "!",
	doctor.Skipped: "-",
}

// printDoctor prints the report: a heading per section, a line per check,
// and a summary line.
func printDoctor(w io.Writer, rep doctor.Report) {
	section := ""
	count := map[doctor.Status]int{}
	for _, c := range rep.Checks {
		count[c.Status]++
		if c.Section != section {
			section = c.Section
			fmt.Fprintln(w, section)
		}
		if c.Name == c.Section {
			fmt.Fprintf(w, "  %s %s\n", doctorMarks[c.Status], oneLine(c.Message))
		} else {
			fmt.Fprintf(w, "  %s %s: %s\n", doctorMarks[c.Status], c.Name, oneLine(c.Message))
		}
	}
	total := len(rep.Checks)
	switch {
	case rep.OK:
		fmt.Fprintf(w, "✔ %d checks passed", total)
		if n := count[doctor.Warning]; n > 0 {
			fmt.Fprintf(w, ", %d with a warning", n)
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintf(w, "✘ %d of %d checks failed", count[doctor.Failed], total)
		if n := count[doctor.Skipped]; n > 0 {
			fmt.Fprintf(w, ", %d not checked because of them", n)
		}
		fmt.Fprintln(w)
	}
}
