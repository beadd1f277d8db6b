package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/relaypod"
)

// ExitNotRunning is kpf status's exit code when no kpf up runs the file.
const ExitNotRunning = 3

const statusLong = `Show the forwards of the kpf up running FILE (forwards.yaml found from the
current directory up, by default): state, serving pod, connections, bytes
and the last error. It asks kpf up over its control channel.

Exit status: 0 when every forward is ready, 1 when some are not (or the
kpf up running the file belongs to another user), 3 when no kpf up runs
the file.`

const statusExample = `  kpf status
  kpf status -o json | jq '.forwards[] | select(.state != "ready")'`

func newStatusCmd(env Env) *cobra.Command {
	var file, output string
	cmd := &cobra.Command{
		Use:     "status",
		Aliases: []string{"ps"},
		Short:   "Show the forwards of the running kpf up",
		Long:    statusLong,
		Example: forName(env, statusExample),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runStatus(cmd.Context(), env, file, output))
		},
	}
	addFileFlag(cmd, &file, runningFileUsage)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output `FORMAT`: table or json")
	cmd.RegisterFlagCompletionFunc("output", fixedValues("table", "json"))
	return cmd
}

func runStatus(ctx context.Context, env Env, file, output string) int {
	if output != "table" && output != "json" {
		fmt.Fprintf(env.Stderr, "kpf status: unknown output format %q (want table or json)\n", output)
		return ExitUsage
	}
	path, sock, code := controlSocket(env, "status", file)
	if code >= 0 {
		return code
	}
	snap, err := control.Fetch(ctx, sock)
	if err != nil {
		return unreachable(env, "status", path, sock, err)
	}
	if output == "json" {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(snap); err != nil {
			return ExitInvalid
		}
	} else {
		printStatusTable(env.Stdout, snap, time.Now())
	}
	if !snap.AllReady() {
		return ExitInvalid
	}
	return ExitOK
}

// printStatusTable prints one row per forward port.
func printStatusTable(w io.Writer, snap control.Snapshot, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FORWARD\tLOCAL\tTARGET\tSTATE\tPOD\tCONNS\tIN\tOUT\tSINCE\tLAST ERROR")
	for _, f := range snap.Forwards {
		state := string(f.State)
		if f.State == control.StateRetrying && !f.RetryAt.IsZero() {
			state = fmt.Sprintf("retrying in %s", max(f.RetryAt.Sub(now), 0).Round(time.Second))
		}
		for i, p := range f.Ports {
			name, target, st, pod, since, reason := f.Name, f.Target, state, f.Pod, now.Sub(f.Since).Round(time.Second).String(), f.Reason
			if reason == "" {
				reason = p.LastError
			}
			if i > 0 {
				name, target, st, pod, since = "", "", "", "", ""
				if reason == f.Reason {
					reason = ""
				}
			}
			if p.Relay != "" {
				st = strings.TrimSpace(st + " via relay")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s:%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", name, p.Local, target, p.Remote, st, dash(pod),
				p.Connections, humanBytes(p.BytesIn), humanBytes(p.BytesOut), dash(since), dash(oneLine(reason)))
		}
	}
	tw.Flush()
	printRelays(w, snap.Relays, now)
}

// printRelays lists kpf's relay pods under the forwards' table, with
// their age, so that what kpf runs in the clusters is never hidden.
func printRelays(w io.Writer, relays []control.Relay, now time.Time) {
	if len(relays) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELAY	CONTEXT/NAMESPACE	STATE	AGE	REACHES")
	for _, r := range relays {
		state := "ready"
		if !r.Ready {
			state = "starting"
			if r.Reason != "" {
				state += ": " + oneLine(r.Reason)
			}
		}
		age := "-"
		if !r.Since.IsZero() {
			age = now.Sub(r.Since).Round(time.Second).String()
		}
		name := r.Pod
		if name == "" {
			name = r.Job
		}
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s\n", dash(name), r.Context, r.Namespace, state, age, strings.Join(r.Allow, " "))
	}
	tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// humanBytes formats a byte count for people: 0, 512B, 1.5KiB, 3.2MiB, ...
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// unreachable reports why the control socket sock of the kpf up running
// path did not answer cmd, and returns the exit code.
func unreachable(env Env, cmd, path, sock string, err error) int {
	switch {
	case errors.Is(err, control.ErrRefused):
		fmt.Fprintf(env.Stderr, "kpf %s: %v\n\thint: run kpf %s as the user who runs kpf up\n", cmd, err, cmd)
		return ExitInvalid
	case errors.Is(err, fs.ErrPermission):
		fmt.Fprintf(env.Stderr, "kpf %s: permission denied on the control socket %s: the kpf up running %s belongs to another user\n\thint: run kpf %s as that user\n",
			cmd, sock, path, cmd)
		return ExitInvalid
	default:
		fmt.Fprintf(env.Stderr, "kpf %s: no kpf up is running %s\n\thint: start it with kpf up -f %s\n", cmd, path, path)
		return ExitNotRunning
	}
}

// controlSocket finds the config file (file, or forwards.yaml from the
// current directory up) and the control socket of the kpf up running it.
// It returns the exit code to return at once, or -1 to go on.
func controlSocket(env Env, cmd, file string) (path, sock string, code int) {
	path = file
	if path == "" {
		var err error
		if path, err = config.Find("."); err != nil {
			fmt.Fprintf(env.Stderr, "kpf: %v\n\thint: name the file with -f FILE\n", err)
			return "", "", ExitInvalid
		}
	}
	sock, err := control.SocketPath(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf %s: %v\n", cmd, err)
		return "", "", ExitInvalid
	}
	return path, sock, -1
}

// wireForwards converts the engine's statuses to the status document's
// form, the only one kpf's commands print.
func wireForwards(st []forward.Status) []control.Forward {
	out := make([]control.Forward, 0, len(st))
	for _, s := range st {
		f := control.Forward{Name: s.Name, Target: s.Target, State: control.State(s.State), Reason: s.Reason,
			Pod: s.Pod, Since: s.Since, RetryAt: s.RetryAt, Sessions: s.Sessions, Attempts: s.Attempts,
			Ports: make([]control.Port, 0, len(s.Ports))}
		for _, p := range s.Ports {
			f.Ports = append(f.Ports, control.Port{Local: p.Local, Remote: p.Remote, RemotePort: p.RemoteNumber, RemoteName: p.RemoteName, Connections: p.Connections,
				Accepted: p.Accepted, Failed: p.Failed, BytesIn: p.BytesIn, BytesOut: p.BytesOut, LastError: p.LastError,
				Spares: p.Spares, SparesTaken: p.SparesTaken, SentAhead: p.SentAhead, Relay: p.Relay})
		}
		out = append(out, f)
	}
	return out
}

// wireRelays is the relays as the status document shows them.
func wireRelays(rs []relaypod.Status) []control.Relay {
	var out []control.Relay
	for _, r := range rs {
		if r.Job == "" && r.Reason == "" {
			continue // nothing needed from it yet
		}
		out = append(out, control.Relay{Context: r.Context, Namespace: r.Namespace, Job: r.Job, Pod: r.Pod,
			Ready: r.Ready, Reason: r.Reason, Since: r.Since, Allow: r.Dests})
	}
	return out
}

// running leaves out the forwards declared disabled.
func running(st []control.Forward) []control.Forward {
	out := make([]control.Forward, 0, len(st))
	for _, f := range st {
		if f.State != control.StateDisabled {
			out = append(out, f)
		}
	}
	return out
}
