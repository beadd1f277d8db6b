package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/kpf-dev/kpf/internal/autoport"
	"github.com/kpf-dev/kpf/internal/buildinfo"
	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/control"
	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/metrics"
	"github.com/kpf-dev/kpf/internal/reconcile"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/sleepwatch"
	"github.com/kpf-dev/kpf/internal/statedir"
)

const upLong = `Start every enabled forward of forwards.yaml (or only the forwards and
groups NAMEd) and keep them running: pods restarting or rolling, endpoints
changing, the API server blipping and the file being edited are all
followed without you doing anything. Ctrl-C stops every forward and exits;
a second Ctrl-C exits at once.`

const upExample = `  kpf up
  kpf up api db                # only these forwards (or groups)
  kpf up -d                    # in the background; kpf down stops it
  kpf up --once --timeout 1m   # exit 0 once all are ready, 1 if not (CI)
  kpf up -v --log-format json`

type upFlags struct {
	file      string
	kube      kubeFlags
	once      bool
	timeout   time.Duration
	logFormat string
	verbose   bool
	logFile   string

	probeInterval time.Duration
	metricsAddr   string
	pprof         bool
	noTUI         bool
	detach        bool
	// quiet logs warnings and errors only, unless verbose (kpf exec).
	quiet bool
}

func newUpCmd(env Env) *cobra.Command {
	var f upFlags
	cmd := &cobra.Command{
		Use:               "up [NAME...]",
		Short:             "Start the declared forwards and keep them running",
		Long:              upLong,
		Example:           forName(env, upExample),
		ValidArgsFunction: completeNames(&f.file),
		RunE: func(cmd *cobra.Command, args []string) error {
			return done(runUp(cmd.Context(), env, f, args))
		},
	}
	fl := cmd.Flags()
	addFileFlag(cmd, &f.file, fileUsage)
	addKubeFlags(cmd, &f.kube)
	fl.BoolVar(&f.once, "once", false, "exit 0 as soon as every forward is ready, or 1 if they are not all ready within --timeout")
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background: return once every forward is ready (or 1 after --timeout), leaving kpf up running; logs go to kpf logs, kpf down stops it")
	fl.DurationVar(&f.timeout, "timeout", time.Minute, "with --once or -d, how long to wait for every forward to be ready")
	fl.StringVar(&f.logFormat, "log-format", "text", "log `FORMAT`: text or json")
	fl.BoolVarP(&f.verbose, "verbose", "v", false, "verbose: log every connection")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics on `ADDR` (e.g. 127.0.0.1:9091); off by default")
	fl.BoolVar(&f.pprof, "pprof", false, "with --metrics-addr, also serve Go's /debug/pprof/ profiles there")
	fl.DurationVar(&f.probeInterval, "probe-interval", 0, "override every forward's health check interval (default: each forward's health.interval, 10s unless set)")
	fl.BoolVar(&f.noTUI, "no-tui", false, "on a terminal, print logs instead of the live status view")
	fl.StringVar(&f.logFile, "log-file", "", "append logs to `PATH` (mode 0600) instead of standard error")
	cmd.RegisterFlagCompletionFunc("log-format", fixedValues("text", "json"))
	cmd.MarkFlagFilename("log-file")
	return cmd
}

func runUp(ctx context.Context, env Env, f upFlags, names []string) int {
	if f.detach {
		if f.once {
			fmt.Fprintln(env.Stderr, "kpf up: --once and --detach do not go together: --once stops the forwards once ready, -d leaves them running")
			return ExitUsage
		}
		return runDetached(ctx, env, f, names)
	}
	logOut := env.Stderr
	if f.logFile != "" {
		lf, err := os.OpenFile(f.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			fmt.Fprintf(env.Stderr, "kpf up: %v\n", err)
			return ExitUsage
		}
		defer lf.Close()
		logOut = lf
	}
	var live *liveView
	if fd, ok := stdoutTerminal(env.Stdout); ok && !f.noTUI && !f.once {
		// The live view owns the screen: logs go under its table (and to
		// --log-file, if given).
		live = &liveView{out: env.Stdout, fd: fd, logs: newRingWriter(500)}
		if f.logFile != "" {
			logOut = io.MultiWriter(logOut, live.logs)
		} else {
			logOut = live.logs
		}
	}
	log, err := newLogger(logOut, f.logFormat, f.verbose)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf up: %v\n", err)
		return ExitUsage
	}
	if f.quiet && !f.verbose {
		log = slog.New(minLevel{log.Handler(), slog.LevelWarn})
	}
	path := f.file
	if path == "" {
		if path, err = config.Find("."); err != nil {
			fmt.Fprintf(env.Stderr, "kpf: %v\n\thint: create one, or name it with -f FILE\n", err)
			return ExitInvalid
		}
	}
	kc, err := kube.LoadKubeconfig(f.kube.kubeconfig)
	if err != nil {
		fmt.Fprintf(env.Stderr, "kpf: %v\n", err)
		return ExitInvalid
	}
	clusters := connect.KubeClusters(kube.NewClusters(kc, log))
	// kpf down ends the forwards' lifetime as a signal does.
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	relays := relaypod.New(clusters, relayOwner(path), buildinfo.RelayImage(), log.With("component", "relay"))
	s := &upProcess{env: env, log: log, flags: f, names: names, live: live, clusters: clusters, shutdown: shutdown,
		relays:  relays,
		ports:   autoport.NewAssigner(portStore(path, log), log),
		proxies: &proxies{clusters: clusters, defaultContext: f.kube.context, log: log, relays: relays}}
	return s.run(ctx, path)
}

// relayDeleteTimeout bounds deleting the relay pods when kpf up stops:
// the API server answers a deletion at once, unless it cannot be reached,
// and then the relays end by themselves when the heartbeat stops.
const relayDeleteTimeout = 5 * time.Second

// deleteRelays deletes the relay pods, once the forwards have stopped.
func (s *upProcess) deleteRelays() {
	ctx, cancel := context.WithTimeout(context.Background(), relayDeleteTimeout)
	defer cancel()
	if err := s.relays.Close(ctx); err != nil {
		s.log.Warn("could not delete every relay pod; they exit by themselves within 2 minutes, when kpf's heartbeat has stopped", "err", err)
	}
}

// relayOwner is who the relay pods of the file at path belong to: this
// user (by name, as labels show it) and this file (control.FileID).
func relayOwner(path string) relaypod.Owner {
	o := relaypod.Owner{User: "unknown"}
	if u, err := user.Current(); err == nil {
		o.User = u.Username
	}
	if id, err := control.FileID(path); err == nil {
		o.File = id
	}
	o.Host, _ = os.Hostname()
	return o
}

func newLogger(w io.Writer, format string, verbose bool) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: slog.LevelInfo}
	if verbose {
		opts.Level = slog.LevelDebug
	}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("unknown log format %q (want text or json)", format)
	}
	log := slog.New(h)
	// client-go logs through klog; send it to the same place, but keep its
	// chatty verbose levels out even with -v.
	klog.SetSlogLogger(slog.New(minLevel{h, slog.LevelInfo}))
	return log, nil
}

// upProcess is one `kpf up`: it wires config, kube, tunnel, forward and
// reconcile together and serves the control endpoint, metrics and the live
// view.
type upProcess struct {
	env      Env
	log      *slog.Logger
	flags    upFlags
	names    []string
	clusters connect.ClusterSource
	live     *liveView // nil when not on a terminal or with --no-tui
	// shutdown ends the forwards' lifetime (kpf down).
	shutdown context.CancelFunc
	// ports gives automatic port mappings their local ports.
	ports *autoport.Assigner
	// relays runs the relay pods of forwards that need one.
	relays *relaypod.Manager

	proxies *proxies
	// sleep tells every forward that the machine slept.
	sleep *sleepwatch.Watcher

	// reloads carries `kpf reload` requests from the control endpoint to
	// the event loop, which alone applies config.
	reloads chan reloadRequest

	mu       sync.Mutex
	disabled []forward.Status // declared with enabled: false, for status
}

// reloadRequest asks the event loop to re-read the file; done receives the
// outcome (buffered, so the loop never waits for the asker).
type reloadRequest struct {
	why  string
	done chan error
}

func (s *upProcess) run(ctx context.Context, path string) int {
	ln, code := s.listenControl(path)
	if ln == nil {
		return code
	}
	s.sleep = sleepwatch.New(0, 0, s.log)
	s.reloads = make(chan reloadRequest)
	rec := reconcile.New(s.newWorker, reconcile.Options{}, s.log)
	snapshot := s.snapshotter(rec, path)

	// The services outlive the forwards: status stays readable while the
	// forwards shut down.
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	var services sync.WaitGroup
	defer func() {
		s.proxies.Stop()
		rec.Stop()
		s.deleteRelays()
		stopServices()
		services.Wait()
	}()
	services.Go(func() { s.sleep.Run(svcCtx) })
	services.Go(func() {
		api := controlAPI{rec: rec, ctx: ctx, snapshot: snapshot, reloads: s.reloads, shutdown: func() {
			s.log.Info("asked to stop (kpf down)")
			s.shutdown()
		}}
		if err := control.Serve(svcCtx, ln, control.Handler(api)); err != nil {
			s.log.Error("control socket stopped", "err", err)
		}
	})
	if addr := s.flags.metricsAddr; addr != "" {
		s.warnIfExposed(addr)
		reg := metrics.Registry(rec.Status)
		services.Go(func() {
			if err := metrics.Serve(svcCtx, addr, reg, s.flags.pprof); err != nil {
				s.log.Error("metrics endpoint stopped", "err", err)
			}
		})
		s.log.Info("serving metrics", "url", "http://"+addr+"/metrics")
	}
	if s.live != nil {
		defer s.startLive(ctx, snapshot)()
	}
	return s.loop(ctx, rec, path, snapshot)
}

// listenControl opens the control endpoint of the file at path; without
// one it prints why and returns the exit code.
func (s *upProcess) listenControl(path string) (net.Listener, int) {
	sock, err := control.SocketPath(path)
	if err != nil {
		fmt.Fprintf(s.env.Stderr, "kpf up: %v\n", err)
		return nil, ExitInvalid
	}
	ln, err := control.Listen(sock)
	if errors.Is(err, control.ErrRunning) {
		fmt.Fprintf(s.env.Stderr, "kpf up: another kpf up already runs %s\n\thint: see it with kpf status -f %s, stop it with Ctrl-C in its terminal\n", path, path)
		return nil, ExitInvalid
	}
	if err != nil {
		fmt.Fprintf(s.env.Stderr, "kpf up: %v\n", err)
		return nil, ExitInvalid
	}
	s.log.Debug("control socket listening", "path", sock)
	return ln, ExitOK
}

// snapshotter returns the function that reads kpf up's status document:
// the running forwards and the disabled ones, sorted by name.
func (s *upProcess) snapshotter(rec *reconcile.Reconciler, path string) func() control.Snapshot {
	abs, _ := filepath.Abs(path)
	started := time.Now()
	return func() control.Snapshot {
		st := rec.Status()
		s.mu.Lock()
		st = append(st, s.disabled...)
		s.mu.Unlock()
		sort.Slice(st, func(i, j int) bool { return st[i].Name < st[j].Name })
		return control.Snapshot{Config: abs, PID: os.Getpid(), Started: started, Forwards: wireForwards(st), Relays: wireRelays(s.relays.Relays())}
	}
}

// warnIfExposed warns when the metrics (and pprof) endpoint listens
// beyond this machine.
func (s *upProcess) warnIfExposed(addr string) {
	if host, _, err := net.SplitHostPort(addr); err == nil && isLoopback(host) {
		return
	}
	what := "metrics are"
	if s.flags.pprof {
		what = "metrics and pprof profiles are"
	}
	s.log.Warn("!!! "+what+" served on a non-loopback address: anyone who can reach it sees your forwards (use 127.0.0.1:PORT)", "addr", addr)
}

// startLive runs the live view until the returned stop is called; stop
// then leaves the last log lines on the shell's screen.
func (s *upProcess) startLive(ctx context.Context, snapshot func() control.Snapshot) (stop func()) {
	liveCtx, stopLive := context.WithCancel(ctx)
	var done sync.WaitGroup
	done.Go(func() { s.live.run(liveCtx, snapshot) })
	return func() {
		stopLive()
		done.Wait()
		fmt.Fprintln(s.env.Stderr, strings.Join(s.live.logs.last(5), "\n"))
	}
}

// loop is kpf up's event loop: it alone applies the file's versions
// (edits, SIGHUP, kpf reload) to rec, until ctx ends or, with --once, the
// forwards are ready or --timeout passes. It returns the exit code.
func (s *upProcess) loop(ctx context.Context, rec *reconcile.Reconciler, path string, snapshot func() control.Snapshot) int {
	updates := config.Watch(ctx, path, s.log)
	hup := make(chan os.Signal, 1)
	if sigs := reloadSignals(); len(sigs) > 0 {
		signal.Notify(hup, sigs...)
		defer signal.Stop(hup)
	}
	applied := make(chan struct{}) // closed once the first version runs
	verdict := make(chan int, 1)   // the table's outcome, with --once
	var table sync.WaitGroup
	tableCtx, stopTable := context.WithCancel(ctx)
	defer func() { stopTable(); table.Wait() }()
	table.Go(func() { s.printTable(tableCtx, snapshot, applied, verdict) })
	first := true
	for {
		select {
		case <-ctx.Done():
			s.log.Info("stopping every forward")
			return ExitOK
		case code := <-verdict:
			return code
		case u, ok := <-updates:
			if !ok {
				return ExitOK
			}
			if code := s.apply(ctx, rec, path, u, first); code >= 0 {
				return code
			}
			if first {
				first = false
				close(applied)
			}
		case <-hup:
			if !first {
				s.reload(ctx, rec, path, "SIGHUP")
			}
		case req := <-s.reloads:
			if first {
				req.done <- errors.New("kpf up has not read its file yet; try again in a moment")
				continue
			}
			req.done <- s.reload(ctx, rec, path, req.why)
		}
	}
}

// printTable prints the status table once, when every forward has
// settled or 10 s after the first version of the file was applied (none
// with the live view, which shows it). With --once it decides the exit:
// ExitOK once every forward is ready, ExitInvalid (after the table) when
// --timeout passes first; it sends that on verdict.
func (s *upProcess) printTable(ctx context.Context, snapshot func() control.Snapshot, applied <-chan struct{}, verdict chan<- int) {
	var deadline <-chan time.Time
	if s.flags.once {
		deadline = time.After(s.flags.timeout)
	}
	printed := s.live != nil
	print := func(st []control.Forward) {
		if !printed {
			printStatus(s.env.Stdout, st)
			printed = true
		}
	}
	select {
	case <-applied:
	case <-deadline:
		print(snapshot().Forwards)
		fmt.Fprintf(s.env.Stderr, "kpf up: not every forward became ready within %s\n", s.flags.timeout)
		verdict <- ExitInvalid
		return
	case <-ctx.Done():
		return
	}
	settle := time.After(10 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			st := running(snapshot().Forwards)
			if allSettled(st, s.flags.once) {
				print(st)
				if s.flags.once && allReady(st) {
					verdict <- ExitOK
					return
				}
			}
		case <-settle:
			print(running(snapshot().Forwards))
		case <-deadline:
			print(running(snapshot().Forwards))
			fmt.Fprintf(s.env.Stderr, "kpf up: not every forward became ready within %s\n", s.flags.timeout)
			verdict <- ExitInvalid
			return
		}
		if printed && !s.flags.once {
			return
		}
	}
}

// reload re-reads the file at path and converges rec to it, as an edit
// of the file would. A file that cannot be run (invalid, or without the
// names given on the command line) leaves the running forwards alone and
// is an error wrapping control.ErrInvalidConfig.
func (s *upProcess) reload(ctx context.Context, rec *reconcile.Reconciler, path, why string) error {
	s.log.Info("reloading", "file", path, "asked_by", why)
	cfg, warns, err := config.Load(path)
	s.apply(ctx, rec, path, config.Update{Config: cfg, Warnings: warns, Err: err}, false)
	if err != nil {
		return control.InvalidConfig(err)
	}
	if _, err := cfg.Select(s.names...); err != nil {
		return control.InvalidConfig(fmt.Errorf("%s: %w", path, err))
	}
	return nil
}

// apply converges rec to an update of the file. For the first update, a
// problem returns the exit code to quit with; later ones are logged and the
// running forwards kept. It returns -1 to go on.
func (s *upProcess) apply(ctx context.Context, rec *reconcile.Reconciler, path string, u config.Update, first bool) int {
	for _, w := range u.Warnings {
		s.log.Warn("config warning", "warning", w.String())
	}
	if u.Err != nil {
		if first {
			fmt.Fprintln(s.env.Stderr, u.Err)
			return ExitInvalid
		}
		s.log.Error("config is invalid; keeping the forwards that run", "file", path, "err", u.Err.Error())
		return -1
	}
	forwards, err := u.Config.Select(s.names...)
	if err != nil {
		if first {
			fmt.Fprintf(s.env.Stderr, "kpf up: %v\n", err)
			return ExitUsage
		}
		s.log.Error("config does not declare the names given on the command line; keeping the forwards that run", "err", err)
		return -1
	}
	for i := range forwards {
		if forwards[i].Context == "" {
			forwards[i].Context = s.flags.kube.context
		}
		if !isLoopback(forwards[i].Address) {
			s.announceOpen(path, forwards[i])
		}
	}
	if err := s.ports.Assign(ctx, forwards); err != nil {
		if first {
			fmt.Fprintf(s.env.Stderr, "kpf up: %v\n", err)
			return ExitInvalid
		}
		s.log.Error("cannot give the automatic ports; keeping the forwards that run", "err", err)
		return -1
	}
	if !first {
		s.log.Info("config changed; converging", "file", path)
	}
	rec.Apply(ctx, forwards)
	s.proxies.Apply(ctx, u.Config.Proxy)
	var disabled []forward.Status
	for _, f := range u.Config.Forwards {
		if !f.Enabled {
			disabled = append(disabled, forward.Disabled(f))
		}
	}
	s.mu.Lock()
	s.disabled = disabled
	s.mu.Unlock()
	return -1
}

// announceOpen warns, as loudly as a log can, that f listens where other
// machines reach it. Validation already made the file opt in with
// allowNonLoopback; this makes sure the person running kpf up sees it.
// When the logs go to a file only, the warning is printed on standard
// error too.
func (s *upProcess) announceOpen(path string, f config.Forward) {
	var locals []string
	for _, m := range f.Ports {
		locals = append(locals, net.JoinHostPort(f.Address, strconv.Itoa(int(m.Local))))
	}
	msg := fmt.Sprintf("!!! NOT LOOPBACK: forward %q listens on %s: any machine that can reach this one can connect to %s through it (allowNonLoopback: true in %s)",
		f.Name, strings.Join(locals, ", "), forward.TargetOf(f), path)
	s.log.Warn(msg, "forward", f.Name, "address", f.Address)
	if s.flags.logFile != "" && s.live == nil {
		fmt.Fprintln(s.env.Stderr, "kpf up: "+msg)
	}
}

// isLoopback reports whether host, an address's host part, is reachable
// from this machine only: localhost or a loopback IP. An empty host (as in
// ":9091") means every interface, and is not.
func isLoopback(host string) bool {
	if host == config.Localhost {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// allSettled: every forward is ready, or (without -once) has a reason not
// to be.
func allSettled(st []control.Forward, once bool) bool {
	for _, s := range st {
		switch s.State {
		case control.StateReady:
		case control.StateFailed, control.StateRetrying:
			if once {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func allReady(st []control.Forward) bool {
	for _, s := range st {
		if s.State != control.StateReady {
			return false
		}
	}
	return true
}

// printStatus prints one line per forward port. The table reaches w in one
// Write: tabwriter writes cell by cell, and a reader of a pipe (a script, a
// test waiting for the table) must never see half of it.
func printStatus(w io.Writer, st []control.Forward) {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	for _, s := range st {
		for _, p := range s.Ports {
			detail := string(s.State)
			if p.Relay != "" {
				detail += " via relay"
			}
			if s.Pod != "" {
				detail += " (pod " + s.Pod + ")"
			}
			if s.Reason != "" {
				detail += ": " + s.Reason
			}
			fmt.Fprintf(tw, "%s\t%s → %s:%s\t%s\n", s.Name, p.Local, s.Target, p.Remote, detail)
		}
	}
	tw.Flush()
	w.Write(buf.Bytes())
}

func (s *upProcess) newWorker(spec config.Forward) reconcile.Worker {
	return forward.New(spec, s.clusters, forward.Options{ProbeInterval: s.flags.probeInterval, Sleep: s.sleep, Relays: s.relays}, s.log.With("forward", spec.Name))
}

// portStore is the store of the automatic ports of the config file at
// path, or nil without a state directory (the Assigner then says that
// it remembers nothing, if there is an automatic port).
func portStore(path string, log *slog.Logger) *autoport.Store {
	id, err := control.FileID(path)
	if err == nil {
		var state string
		if state, err = statedir.State(); err == nil {
			return autoport.NewStore(state, id)
		}
	}
	log.Debug("no state directory for automatic ports", "err", err)
	return nil
}

// minLevel drops records below a level, whatever the wrapped handler allows.
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.level && m.Handler.Enabled(ctx, l)
}

func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{m.Handler.WithAttrs(a), m.level}
}
func (m minLevel) WithGroup(g string) slog.Handler { return minLevel{m.Handler.WithGroup(g), m.level} }

// controlAPI exposes the reconciler on the control socket.
type controlAPI struct {
	rec      *reconcile.Reconciler
	ctx      context.Context // the forwards' lifetime
	snapshot func() control.Snapshot
	reloads  chan<- reloadRequest
	shutdown func()
}

func (a controlAPI) Shutdown(context.Context) error {
	a.shutdown()
	return nil
}

func (a controlAPI) Snapshot() control.Snapshot { return a.snapshot() }

func (a controlAPI) Restart(_ context.Context, name string) error {
	err := a.rec.Restart(a.ctx, name)
	if errors.Is(err, reconcile.ErrUnknownForward) {
		return fmt.Errorf("%w: %q", control.ErrUnknownForward, name)
	}
	return err
}

// Reload hands the request to the event loop and waits for its outcome.
// It gives up when the caller goes or kpf up stops.
func (a controlAPI) Reload(ctx context.Context) error {
	req := reloadRequest{why: "kpf reload", done: make(chan error, 1)}
	select {
	case a.reloads <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-a.ctx.Done():
		return errors.New("kpf up is stopping")
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-a.ctx.Done():
		return errors.New("kpf up is stopping")
	}
}
