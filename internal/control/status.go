package control

import "time"

// Snapshot is the document GET /v1/status returns and `kpf status -o json`
// prints. Its shape is stable: fields are only ever added, and a State's
// values are only ever added. This package owns it so that the engine's
// types can change without changing what scripts read.
type Snapshot struct {
	// Config is the absolute path of the forwards.yaml being run.
	Config string `json:"config"`
	// PID is the process id of kpf up.
	PID int `json:"pid"`
	// Started is when kpf up started.
	Started time.Time `json:"started"`
	// Forwards are the running forwards, sorted by name.
	Forwards []Forward `json:"forwards"`
	// Relays are the relay pods kpf up runs for forwards that reach what
	// has no pod, by context and namespace; absent when there are none.
	Relays []Relay `json:"relays,omitempty"`
}

// Relay is one of kpf's relay pods (a Job's), as kpf status shows it.
type Relay struct {
	Context   string `json:"context"`
	Namespace string `json:"namespace"`
	// Job is the relay's Job; Pod its pod once ready.
	Job string `json:"job,omitempty"`
	Pod string `json:"pod,omitempty"`
	// Ready is false while it starts or is being replaced; Reason says
	// why.
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"`
	// Since is when the Job was created (or found, created by an earlier
	// kpf).
	Since time.Time `json:"since"`
	// Allow is the exact destinations it reaches ("host:port/proto").
	Allow []string `json:"allow"`
}

// AllReady reports whether every forward that runs is ready; disabled
// forwards do not count.
func (s Snapshot) AllReady() bool {
	for _, f := range s.Forwards {
		if f.State != StateReady && f.State != StateDisabled {
			return false
		}
	}
	return true
}

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
	// tries again at RetryAt, with backoff.
	StateRetrying State = "retrying"
	// StateStopped: the forward was stopped.
	StateStopped State = "stopped"
	// StateDisabled: declared with enabled: false; kpf does not run it.
	StateDisabled State = "disabled"
)

// Forward is one forward in a Snapshot.
type Forward struct {
	Name string `json:"name"`
	// Target is where the forward goes: context/namespace/kind/name.
	Target string `json:"target"`
	State  State  `json:"state"`
	// Reason says why the forward is not ready: the cause first, then
	// what to do.
	Reason string `json:"reason,omitempty"`
	// Pod is the pod new connections go to.
	Pod   string    `json:"pod,omitempty"`
	Since time.Time `json:"since"`
	Ports []Port    `json:"ports"`
	// RetryAt is when kpf tries again, while retrying.
	RetryAt time.Time `json:"retryAt,omitzero"`
	// Sessions is how many port-forward sessions the forward has used:
	// one at start, one more per reconnect or new pod. Forwards to the
	// same pod share their sessions, so each of them counts a shared one.
	Sessions int64 `json:"sessions"`
	// Attempts is how many attempts in a row have failed, while retrying.
	Attempts int64 `json:"attempts,omitempty"`
}

// Port is the traffic of one local listener of a forward.
type Port struct {
	// Local is the address listened on; Remote the remote port as the
	// file writes it (a number or a name).
	Local  string `json:"local"`
	Remote string `json:"remote"`
	// RemotePort and RemoteName spell the remote port both ways, as the
	// target (a service's port, else a container port) defines it, once
	// resolved; RemoteName is absent for a port without a name.
	RemotePort  uint16 `json:"remotePort,omitempty"`
	RemoteName  string `json:"remoteName,omitempty"`
	Connections int64  `json:"connections"`
	Accepted    int64  `json:"accepted"`
	Failed      int64  `json:"failed"`
	BytesIn     int64  `json:"bytesIn"`
	BytesOut    int64  `json:"bytesOut"`
	LastError   string `json:"lastError,omitempty"`
	// Relay is where kpf's relay takes this port's connections
	// ("host:port/tcp" or "/udp"); absent when they go to a pod.
	Relay string `json:"relay,omitempty"`
	// Spares is how many spare connections are open now, ready for the
	// next clients; SparesTaken how many clients were given one.
	Spares      int   `json:"spares,omitempty"`
	SparesTaken int64 `json:"sparesTaken,omitempty"`
	// SentAhead is how many connections sent their client's first bytes
	// along with the frames that opened their streams.
	SentAhead int64 `json:"sentAhead,omitempty"`
}
