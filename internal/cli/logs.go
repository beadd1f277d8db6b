package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"time"

	"github.com/spf13/cobra"

	"github.com/kpf-dev/kpf/internal/config"
)

const logsLong = `Show the log of the kpf up that kpf up -d started for FILE (it appends
to one log per file, kept in kpf's state directory, mode 0600), or only
the lines of the forwards NAMEd. With -f, keep showing new lines until
Ctrl-C.`

const logsExample = `  kpf logs
  kpf logs -f db               # follow the forward db
  kpf logs --since 10m`

type logsFlags struct {
	file   string
	follow bool
	since  time.Duration
}

func newLogsCmd(env Env) *cobra.Command {
	var f logsFlags
	cmd := &cobra.Command{
		Use:               "logs [NAME...]",
		Short:             "Show the log of the kpf up running in the background",
		Long:              logsLong,
		Example:           forName(env, logsExample),
		ValidArgsFunction: completeNames(&f.file),
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runLogs(cmd.Context(), env, f, args))
		},
	}
	// -f is --follow here, as in docker compose logs and tail: the file
	// has only its long name.
	cmd.Flags().StringVar(&f.file, "file", "", runningFileUsage)
	cmd.MarkFlagFilename("file", "yaml", "yml")
	cmd.Flags().BoolVarP(&f.follow, "follow", "f", false, "keep showing new lines until Ctrl-C")
	cmd.Flags().DurationVar(&f.since, "since", 0, "only lines of the last `DURATION` (e.g. 10m)")
	return cmd
}

func runLogs(ctx context.Context, env Env, f logsFlags, names []string) int {
	path := f.file
	if path == "" {
		var err error
		if path, err = config.Find("."); err != nil {
			fmt.Fprintf(env.Stderr, "kpf: %v\n\thint: name the file with --file FILE\n", err)
			return ExitInvalid
		}
	}
	logFile, err := logPath(path)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf logs: %v\n", err)
		return ExitInvalid
	}
	file, err := os.Open(logFile)
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.Stderr, "kpf logs: no log for %s yet\n\thint: kpf up -d writes it; a kpf up in a terminal logs there (or to --log-file)\n", path)
		return ExitNotRunning
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf logs: %v\n", err)
		return ExitInvalid
	}
	defer file.Close()
	keep := logFilter(names, f.since, time.Now())
	if err := copyLines(env.Stdout, file, keep); err != nil {
		fmt.Fprintf(env.Stderr, "kpf logs: %v\n", err)
		return ExitInvalid
	}
	if !f.follow {
		return ExitOK
	}
	return followLog(ctx, env, file, keep)
}

// followLog shows the lines appended to file until ctx ends.
func followLog(ctx context.Context, env Env, file *os.File, keep func(string) bool) int {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ExitOK
		case <-tick.C:
		}
		if err := copyLines(env.Stdout, file, keep); err != nil {
			fmt.Fprintf(env.Stderr, "kpf logs: %v\n", err)
			return ExitInvalid
		}
	}
}

// copyLines copies the whole lines from r's current offset that keep
// accepts; a last line without its newline yet is left for the next call.
func copyLines(w io.Writer, r io.ReadSeeker, keep func(string) bool) error {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			// Leave the partial line to be read again once it ends.
			_, serr := r.Seek(int64(-len(line))-int64(br.Buffered()), io.SeekCurrent)
			return serr
		}
		if err != nil {
			return err
		}
		if keep(line) {
			if _, err := io.WriteString(w, line); err != nil {
				return err
			}
		}
	}
}

var (
	logTime    = regexp.MustCompile(`(?:^time=|"time":")([0-9T:.+-]+Z?[0-9:+-]*)`)
	logForward = regexp.MustCompile(`(?:\bforward=|"forward":")([a-z0-9._-]+)`)
)

// logFilter accepts the lines of the forwards named (all lines when none
// is) written since the duration before now (all when 0). A line whose
// time cannot be read is kept.
func logFilter(names []string, since time.Duration, now time.Time) func(string) bool {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	return func(line string) bool {
		if len(want) > 0 {
			m := logForward.FindStringSubmatch(line)
			if m == nil || !want[m[1]] {
				return false
			}
		}
		if since > 0 {
			if m := logTime.FindStringSubmatch(line); m != nil {
				if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && now.Sub(t) > since {
					return false
				}
			}
		}
		return true
	}
}
