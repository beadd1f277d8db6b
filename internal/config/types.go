package config

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Localhost is the address value that means both loopback addresses.
const Localhost = "localhost"

// FileName is the name Find looks for.
const FileName = "forwards.yaml"

// MaxFileSize is the largest forwards.yaml Load and Parse accept.
const MaxFileSize = 1 << 20

// Built-in defaults, used where neither a forward nor the defaults block says
// otherwise.
const (
	DefaultNamespace = "default"
	// DefaultAddress binds both loopback addresses, 127.0.0.1 and ::1, as
	// kubectl port-forward does; see [Forward.LocalAddrs].
	DefaultAddress      = Localhost
	DefaultWaitForReady = 30 * time.Second
	DefaultBalance      = BalanceFirst
	// MaxSpare is the largest spare accepted: spare connections are idle
	// connections to the pod, and more than a few save nothing.
	MaxSpare = 8
	// MaxWaitForReady is the largest waitForReady accepted.
	MaxWaitForReady = 10 * time.Minute

	DefaultHealthInterval  = 10 * time.Second
	DefaultHealthTimeout   = 5 * time.Second
	DefaultHealthThreshold = 3
	// MinHealthInterval and MaxHealthInterval bound health.interval.
	MinHealthInterval = time.Second
	MaxHealthInterval = 10 * time.Minute
	// MaxHealthThreshold is the largest health.threshold accepted.
	MaxHealthThreshold = 100
)

// Config is a parsed and validated forwards.yaml.
type Config struct {
	// File is the path the config was read from, as the user gave it.
	File string
	// Version is the format version; always 1 in a valid config.
	Version int
	// Defaults holds the resolved defaults block (built-in defaults filled in).
	Defaults Defaults
	// Forwards are in file order, each with defaults applied.
	Forwards []Forward
	// Proxy is the proxy block, nil when the file has none.
	Proxy *Proxy

	// pos maps a value path such as "forwards[1].ports[0]" to where it was
	// written. It is nil for a Config built in code.
	pos map[string]Position
}

// Defaults are the values a forward inherits for fields it does not set.
type Defaults struct {
	Context      string
	Namespace    string
	Address      string
	WaitForReady time.Duration
	Balance      Balance
	Spare        int
	// Health is the defaults block's health check; its Port is always zero
	// (the probed port is per forward).
	Health Health
	// Relay is the defaults block's relay settings.
	Relay Relay
}

// Forward is one declared port-forward, fully resolved: defaults are applied
// and only Context == "" remains to be read as "the kubeconfig's
// current-context".
//
// Name is the forward's stable identity: across reloads of the file a
// forward with the same Name is the same forward, and [Forward.Equal] tells
// whether it has to be restarted.
type Forward struct {
	Name      string
	Context   string
	Namespace string
	Target    Target
	Ports     []PortMapping
	// Address is the local bind address: "localhost" (both loopback
	// addresses, the default) or a normalized IP string. See LocalAddrs.
	Address          string
	AllowNonLoopback bool
	Enabled          bool
	Groups           []string
	Balance          Balance
	WaitForReady     time.Duration
	// Spare is how many connections per port mapping kpf keeps open to
	// the pod ahead of clients (0 to MaxSpare): a client then skips the
	// stream set-up round trip through the API server.
	Spare int
	// Health is always filled in by Parse, from the forward's health field,
	// the defaults block and the built-in defaults, in that order.
	Health Health
	// Env are the forward's own environment variables for applications
	// (kpf env, kpf exec): names to templates over appenv.Fields, checked
	// by Parse.
	Env map[string]string
	// Relay says how kpf runs the relay pod through which the forward
	// reaches a host, an ExternalName service, a service without pods or
	// a UDP port: the forward's relay field over the defaults block's.
	Relay Relay
	// Pos is where the forward's mapping starts in the file.
	Pos Position
}

// LocalAddrs returns the IP addresses the forward binds: 127.0.0.1 and ::1
// for "localhost" (kpf listens on whichever of the two the host has, as
// kubectl port-forward does, so that a client resolving localhost to either
// family reaches it), else the one address. It returns nil for an address
// that is not valid.
func (f Forward) LocalAddrs() []netip.Addr {
	return localAddrs(f.Address)
}

func localAddrs(address string) []netip.Addr {
	if address == Localhost {
		return []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1}), netip.IPv6Loopback()}
	}
	a, err := netip.ParseAddr(address)
	if err != nil {
		return nil
	}
	return []netip.Addr{a}
}

// Equal reports whether f and g describe the same running tunnel: it
// compares every field that affects one, and ignores Pos, Groups and
// Enabled.
func (f Forward) Equal(g Forward) bool {
	return f.Name == g.Name &&
		f.Context == g.Context &&
		f.Namespace == g.Namespace &&
		f.Target == g.Target &&
		slices.Equal(f.Ports, g.Ports) &&
		f.Address == g.Address &&
		f.AllowNonLoopback == g.AllowNonLoopback &&
		f.Balance == g.Balance &&
		f.WaitForReady == g.WaitForReady &&
		f.Spare == g.Spare &&
		f.Health == g.Health &&
		f.Relay.Equal(g.Relay)
}

// Relay configures the relay pod kpf runs, one per context, namespace and
// settings, to reach what has no pod of its own. The zero value means
// kpf's defaults throughout.
type Relay struct {
	// Image is the relay's image; "" means the relay image of kpf's own
	// version, pinned by digest.
	Image string
	// Namespace is where the relay pod runs; "" means the forward's
	// namespace.
	Namespace string
	// NodeSelector and Tolerations place the relay pod, as in a pod spec.
	NodeSelector map[string]string
	Tolerations  []Toleration
	// Requests and Limits are resource quantities by resource name ("cpu",
	// "memory"), as in a container's resources; nil means kpf's defaults
	// for each.
	Requests, Limits map[string]string
}

// Equal reports whether r and o are the same settings.
func (r Relay) Equal(o Relay) bool {
	return r.Image == o.Image && r.Namespace == o.Namespace &&
		maps.Equal(r.NodeSelector, o.NodeSelector) &&
		slices.EqualFunc(r.Tolerations, o.Tolerations, Toleration.equal) &&
		maps.Equal(r.Requests, o.Requests) && maps.Equal(r.Limits, o.Limits)
}

// Toleration is a pod toleration, as in a pod spec.
type Toleration struct {
	Key, Operator, Value, Effect string
	// Seconds is tolerationSeconds; nil when not written.
	Seconds *int64
}

func (t Toleration) equal(o Toleration) bool {
	return t.Key == o.Key && t.Operator == o.Operator && t.Value == o.Value && t.Effect == o.Effect &&
		(t.Seconds == nil) == (o.Seconds == nil) && (t.Seconds == nil || *t.Seconds == *o.Seconds)
}

// Proxy is the proxy block: a SOCKS5 proxy, an HTTP proxy or both, through
// which clients reach the services of some namespaces by their cluster DNS
// names (svc.ns, svc.ns.svc, svc.ns.svc.cluster.local). Destinations that
// are not such names are refused. The proxies listen on loopback only.
type Proxy struct {
	// SOCKS5 and HTTP are the listen addresses as "IP:port" with a
	// loopback IP ("localhost" becomes 127.0.0.1, an IPv6 address is in
	// brackets); "" means that proxy is off. At least one is set.
	SOCKS5, HTTP string
	// Namespaces are the namespaces whose services the proxies reach. When
	// the file does not set them, Parse fills in the namespaces of the
	// enabled forwards, in file order.
	Namespaces []string
	// Contexts are the kube contexts the proxies reach those namespaces
	// in. When the file does not set them, Parse fills in the contexts of
	// the enabled forwards, in file order, where "" stands for the
	// kubeconfig's current-context, as in Forward.Context.
	Contexts []string
	// Pos is where the proxy mapping starts in the file.
	Pos Position
}

// Equal reports whether p and q configure the same proxies; it ignores
// Pos. Two nil proxies are equal.
func (p *Proxy) Equal(q *Proxy) bool {
	if p == nil || q == nil {
		return p == q
	}
	return p.SOCKS5 == q.SOCKS5 && p.HTTP == q.HTTP &&
		slices.Equal(p.Namespaces, q.Namespaces) && slices.Equal(p.Contexts, q.Contexts)
}

// Health is how kpf checks, through the tunnel, that the pod a forward uses
// is still serving. After Threshold consecutive failed probes the pod is
// avoided for new connections and kpf picks another ready endpoint.
type Health struct {
	// HTTPPath is the path of an HTTP GET whose status must be 2xx or 3xx;
	// "" means a TCP check: a stream opened to Port without an error
	// reported by the kubelet.
	HTTPPath string
	// Port is the remote port probed; it equals the Remote of one of the
	// forward's port mappings (by default the first one's).
	Port Port
	// Interval is the time between probes; Timeout bounds one probe and is
	// shorter than Interval.
	Interval, Timeout time.Duration
	// Threshold is how many consecutive failures make the pod unhealthy.
	Threshold int
}

// defaultHealth is the built-in health check: TCP, without a port.
var defaultHealth = Health{
	Interval:  DefaultHealthInterval,
	Timeout:   DefaultHealthTimeout,
	Threshold: DefaultHealthThreshold,
}

// TargetKind is what a forward points at.
type TargetKind int

// The target kinds, one per target field of a forward.
const (
	Service TargetKind = iota + 1
	Pod
	Deployment
	StatefulSet
	Selector
	// Host is a DNS name or IP address as seen from inside the cluster,
	// reached through the relay.
	Host
)

// String returns the short kind prefix used in Target.String, e.g. "svc".
func (k TargetKind) String() string {
	switch k {
	case Service:
		return "svc"
	case Pod:
		return "pod"
	case Deployment:
		return "deploy"
	case StatefulSet:
		return "sts"
	case Selector:
		return "selector"
	case Host:
		return "host"
	}
	return "TargetKind(" + strconv.Itoa(int(k)) + ")"
}

// Target is the object a forward reaches pods through.
type Target struct {
	Kind TargetKind
	// Name is the object name, or the host for Kind == Host; empty for
	// Kind == Selector.
	Name string
	// Selector is the canonical label selector; set only for Kind == Selector.
	Selector string
}

// String returns the kubectl-like form, e.g. "svc/thanos-query" or
// "selector/app=web".
func (t Target) String() string {
	if t.Kind == Selector {
		return "selector/" + t.Selector
	}
	return t.Kind.String() + "/" + t.Name
}

// PortMapping maps a local port to a remote port.
type PortMapping struct {
	// Local is the local port; 0 while Auto has not been given one.
	Local  uint16
	Remote Port
	// Auto is set for "auto:REMOTE" (or local: auto): kpf up picks a
	// free local port and remembers it for the file and forward.
	Auto bool
	// Protocol is TCP (the zero value) or UDP ("53:53/udp"): UDP reaches
	// hosts and services through the relay.
	Protocol Protocol
}

// String returns "LOCAL:REMOTE", or "auto:REMOTE" for an automatic port
// not yet given one, with "/udp" after a UDP mapping.
func (m PortMapping) String() string {
	s := strconv.Itoa(int(m.Local)) + ":" + m.Remote.String()
	if m.Auto && m.Local == 0 {
		s = "auto:" + m.Remote.String()
	}
	if m.Protocol == UDP {
		s += "/udp"
	}
	return s
}

// Protocol is a port mapping's transport protocol.
type Protocol uint8

// The protocols; TCP is the zero value.
const (
	TCP Protocol = iota
	UDP
)

// String returns "tcp" or "udp".
func (p Protocol) String() string {
	if p == UDP {
		return "udp"
	}
	return "tcp"
}

// Port is a remote port given as a number or as a name; exactly one of
// Number and Name is set. For a service target it is a service port, for
// every other target a container port.
type Port struct {
	Number uint16
	Name   string
}

// String returns the number or the name.
func (p Port) String() string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Number))
}

// Balance says how new connections are spread over ready endpoints.
type Balance string

// The balance modes.
const (
	// BalanceFirst sends every connection to the first ready endpoint.
	BalanceFirst Balance = "first"
	// BalanceRoundRobin spreads new connections over all ready endpoints.
	BalanceRoundRobin Balance = "round-robin"
)

// Valid reports whether b is a known balance mode.
func (b Balance) Valid() bool {
	return b == BalanceFirst || b == BalanceRoundRobin
}

// Position is a place in a file; Line and Col are 1-based.
type Position struct {
	File string
	Line int
	Col  int
}

// String returns "FILE:LINE:COL".
func (p Position) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// ErrNoMatch is wrapped by the error Select returns for names that match no
// enabled forward.
var ErrNoMatch = errors.New("no such forward or group")

// Select returns the enabled forwards whose name or one of whose groups is
// among names, in file order and without repeats. With no names it returns
// every enabled forward. A name that matches nothing, or only disabled
// forwards, is an error wrapping ErrNoMatch that names it.
func (c *Config) Select(names ...string) ([]Forward, error) {
	var out []Forward
	if len(names) == 0 {
		for _, f := range c.Forwards {
			if f.Enabled {
				out = append(out, f)
			}
		}
		return out, nil
	}
	var unknown, disabled []string
	picked := make([]bool, len(c.Forwards))
	for _, n := range names {
		known, enabled := false, false
		for i, f := range c.Forwards {
			if f.Name != n && !slices.Contains(f.Groups, n) {
				continue
			}
			known = true
			if f.Enabled {
				enabled = true
				picked[i] = true
			}
		}
		switch {
		case !known:
			unknown = append(unknown, strconv.Quote(n))
		case !enabled:
			disabled = append(disabled, strconv.Quote(n))
		}
	}
	var errs []error
	if len(unknown) > 0 {
		errs = append(errs, fmt.Errorf("select %s: %w", strings.Join(unknown, ", "), ErrNoMatch))
	}
	if len(disabled) > 0 {
		errs = append(errs, fmt.Errorf("select %s: only disabled forwards match: %w", strings.Join(disabled, ", "), ErrNoMatch))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for i, f := range c.Forwards {
		if picked[i] {
			out = append(out, f)
		}
	}
	return out, nil
}

// Position returns where the value at path (for example
// "forwards[1].context" or "defaults.namespace") was written in the file.
// It reports false when the value was not written there, for example
// because it came from the defaults block or from a built-in default.
func (c *Config) Position(path string) (Position, bool) {
	p, ok := c.pos[path]
	return p, ok
}
