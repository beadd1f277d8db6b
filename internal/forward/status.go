package forward

import (
	"net"
	"strconv"
	"time"

	"github.com/kpf-dev/kpf/internal/config"

	"github.com/kpf-dev/kpf/internal/tunnel"
)

// State is where a forward is in its life.
type State string

// The states a forward reports.
const (
	StateStarting State = "starting"
	// StateWaiting: listening, but no ready endpoint (yet).
	StateWaiting State = "waiting"
	// StateReady: listening, with a live session to a ready pod.
	StateReady State = "ready"
	// StateFailed: listening, but the target cannot be used (not found, a
	// port name it lacks, a session that cannot be opened); kpf retries.
	StateFailed State = "failed"
	// StateRetrying: the forward cannot serve now (see Reason) and kpf
	// tries again at RetryAt, with backoff: either a port-forward session
	// could not be opened (the local ports stay bound, and a new client
	// connection tries at once), or the forward stopped and restarts.
	StateRetrying State = "retrying"
	// StateStopped: the forward was stopped.
	StateStopped State = "stopped"
	// StateDisabled: declared with enabled: false; kpf does not run it.
	StateDisabled State = "disabled"
)

// Status is a snapshot of one forward. Its wire form, what kpf status
// prints, is control.Forward, which the command line converts it to.
type Status struct {
	Name string
	// Target is where the forward goes: context/namespace/kind/name.
	Target  string
	State   State
	Reason  string
	Pod     string
	Since   time.Time
	Ports   []PortStatus
	RetryAt time.Time
	// Sessions is how many port-forward sessions the forward has used:
	// one at start, one more per reconnect or new pod. Forwards to the same
	// pod share their sessions, so each of them counts a shared one.
	Sessions int64
	// Attempts is how many attempts in a row have failed, while retrying.
	Attempts int64
}

// PortStatus is the traffic of one local listener.
type PortStatus struct {
	Local  string
	Remote string
	// RemoteNumber and RemoteName spell the remote port both ways, as the
	// target defines it (0 and "" until it has resolved, or when it has
	// no name).
	RemoteNumber uint16
	RemoteName   string
	Connections  int64
	Accepted     int64
	Failed       int64
	BytesIn      int64
	BytesOut     int64
	LastError    string
	// Relay is where kpf's relay takes the port's connections
	// ("host:port/proto"); "" when they go to a pod.
	Relay string
	// Spares is how many spare connections are open now, ready for the
	// next clients; SparesTaken how many clients were given one.
	Spares      int
	SparesTaken int64
	// SentAhead is how many connections sent their client's first bytes
	// along with the frames that opened their streams, saving a round
	// trip to the kubelet.
	SentAhead int64
	// Dial is the distribution of how long connections waited for their
	// upstream; exported as metrics, not in JSON.
	Dial tunnel.HistogramSnapshot
}

// setState records the forward's state; pod is the pod it uses, if any,
// in its own namespace (a relay's may differ from the forward's), which
// the log line names in full.
func (r *Runner) setState(state State, reason string, pod tunnel.Pod) {
	old := r.state.Load()
	if old != nil && old.State == state && old.Reason == reason && old.Pod == pod.Name {
		return
	}
	s := &Status{Name: r.spec.Name, Target: r.target(), State: state, Reason: reason, Pod: pod.Name, Since: time.Now()}
	r.state.Store(s)
	if old == nil {
		return
	}
	attrs := []any{"state", state}
	if pod.Name != "" {
		attrs = append(attrs, "pod", pod.String())
	}
	if reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	switch state {
	case StateFailed:
		r.log.Warn("forward failed", attrs...)
	default:
		r.log.Info("forward "+string(state), attrs...)
	}
}

// setRetry records the retry to open a session that is pending after
// attempts failures in a row; 0 means none is.
func (r *Runner) setRetry(attempts int, at time.Time) {
	r.attempts.Store(int64(attempts))
	r.retryAt.Store(&at)
}

// Status returns a snapshot of the forward's state and traffic.
func (r *Runner) Status() Status {
	s := *r.state.Load()
	s.Sessions = r.sessions.Load()
	if n := r.attempts.Load(); n > 0 && s.State == StateFailed {
		s.State, s.Attempts = StateRetrying, n
		if at := r.retryAt.Load(); at != nil {
			s.RetryAt = *at
		}
	}
	for _, p := range r.ports {
		ps := PortStatus{
			Local:       p.addr,
			Remote:      remoteString(p.mapping),
			Connections: p.stats.Active.Load(),
			Accepted:    p.stats.Accepted.Load(),
			Failed:      p.stats.Failed.Load(),
			BytesIn:     p.stats.BytesIn.Load(),
			BytesOut:    p.stats.BytesOut.Load(),
			SentAhead:   p.stats.SentAhead.Load(),
			Dial:        p.stats.Dial.Snapshot(),
		}
		if e := p.stats.LastError.Load(); e != nil {
			ps.LastError = *e
		}
		if d := p.relay.Load(); d != nil {
			ps.Relay = *d
		}
		if sp := p.spelling.Load(); sp != nil {
			ps.RemoteNumber, ps.RemoteName = sp.Number, sp.Name
		}
		if p.spares != nil {
			ps.Spares = p.spares.len()
			ps.SparesTaken = p.spares.takes.Load()
		}
		s.Ports = append(s.Ports, ps)
	}
	return s
}

func (r *Runner) target() string { return TargetOf(r.spec) }

// TargetOf names where a forward goes: context/namespace/kind/name.
func TargetOf(f config.Forward) string {
	ctx := f.Context
	if ctx == "" {
		ctx = "(current-context)"
	}
	return ctx + "/" + f.Namespace + "/" + f.Target.String()
}

// Disabled is the status shown for a forward the file declares disabled.
func Disabled(f config.Forward) Status {
	s := Status{Name: f.Name, Target: TargetOf(f), State: StateDisabled}
	for _, m := range f.Ports {
		s.Ports = append(s.Ports, PortStatus{Local: net.JoinHostPort(f.Address, strconv.Itoa(int(m.Local))), Remote: m.Remote.String()})
	}
	return s
}

// remoteString is a mapping's remote port as status shows it: "5432", "pg",
// "53/udp".
func remoteString(m config.PortMapping) string {
	if m.Protocol == config.UDP {
		return m.Remote.String() + "/udp"
	}
	return m.Remote.String()
}
