// Package dialer lets Go programs reach Kubernetes services by their
// cluster names through port-forwards, without a local port per service
// and without root: a Dialer's DialContext routes
// "name.namespace[.svc[.cluster.local]]:port" to a ready endpoint of that
// service over a port-forward session, and plugs into http.Transport,
// gRPC's WithContextDialer and database drivers that accept a dialer.
//
// Sessions are shared: one port-forward connection per pod carries the
// connections to that pod (more while several run at once). Each dial
// resolves the service's ready endpoints afresh from informer caches, so a
// deleted or unready pod is never picked and a dial made while none is
// ready waits for one (bounded by the context and Options.Wait). The
// connections it returns are full net.Conns: deadlines work as net.Conn
// documents. A Dialer is safe for concurrent use; Close releases every
// session, informer and goroutine it started.
//
// This is kpf's only public Go package; the rest of kpf is internal and
// may change in any release.
package dialer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"time"

	"github.com/kpf-dev/kpf/internal/buildinfo"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/svcdial"
)

// The causes a failed DialContext wraps, for errors.Is (besides the
// context's own error).
var (
	// ErrRefused: an address the Dialer will not route (not a cluster
	// name, or a namespace or cluster domain it may not reach) when there
	// is no Fallback.
	ErrRefused = svcdial.ErrRefused
	// ErrClosed: DialContext after Close, and the dials Close interrupts.
	ErrClosed = svcdial.ErrClosed
	// ErrNoReadyEndpoints: no ready endpoint of the service in the time
	// allowed.
	ErrNoReadyEndpoints = svcdial.ErrNoReadyEndpoints
	// ErrUnauthorized: the API server rejects the credentials.
	ErrUnauthorized = svcdial.ErrUnauthorized
)

// Options configure a Dialer. The zero value dials the short names and
// cluster.local in the kubeconfig's current context, in any namespace
// named with .svc.
type Options struct {
	// Kubeconfig is the kubeconfig to use, a path or a list of paths as
	// in KUBECONFIG; "" means $KUBECONFIG, else ~/.kube/config, as
	// kubectl reads them. Credential plugins run as they do in kubectl.
	Kubeconfig string
	// DefaultContext serves the short names (name.namespace,
	// name.namespace.svc) and the cluster.local domain. "" means the
	// kubeconfig's current context.
	DefaultContext string
	// Domains maps other cluster domains to kube contexts, so that
	// "api.shop.svc.prod.local:80" can reach context "prod" with
	// {"prod.local": "prod"}.
	Domains map[string]string
	// Namespaces, if not empty, are the only namespaces reachable. A
	// two-label name (name.namespace) counts as a cluster name only when
	// its namespace is listed here, so that "example.com:443" is not
	// mistaken for service "example" in namespace "com"; the .svc forms
	// always count as cluster names (and are refused if not listed).
	Namespaces []string
	// Fallback dials addresses that are not cluster names. nil refuses
	// them with ErrRefused.
	Fallback func(ctx context.Context, network, addr string) (net.Conn, error)
	// Wait bounds how long a dial waits for a ready endpoint when ctx has
	// no earlier deadline; 0 means 30 s.
	Wait time.Duration
	// Logger receives the Dialer's logs (sessions opened and lost, pods
	// left); nil discards them. Credentials are never logged.
	Logger *slog.Logger
	// Relay lets the Dialer reach services that no pod backs (ExternalName
	// services, services without a selector whose endpoints are not pods)
	// through kpf's relay: a least-privileged pod that the Dialer starts
	// in the service's namespace on the first such dial (it needs the Role
	// of kpf's docs/relay.md), which reaches only the destinations dialled,
	// and which Close deletes (or which exits by itself a minute after the
	// program dies). Off by default: without it such dials fail.
	Relay bool
}

// Dialer dials cluster services through port-forwards.
type Dialer struct {
	d      *svcdial.Dialer
	relays *relaypod.Manager
}

// relayDeleteTimeout bounds Close's deletion of the relay pods.
const relayDeleteTimeout = 5 * time.Second

// New returns a Dialer over the kubeconfig's contexts. It fails only if
// the kubeconfig cannot be read; clusters are contacted on the first dial.
func New(opts Options) (*Dialer, error) {
	kc, err := kube.LoadKubeconfig(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	clusters := connect.KubeClusters(kube.NewClusters(kc, log))
	d := &Dialer{}
	if opts.Relay {
		d.relays = relaypod.New(clusters, dialerOwner(), buildinfo.RelayImage(), log)
	}
	d.d = svcdial.NewWithClusters(clusters, svcdial.Options{
		DefaultContext: opts.DefaultContext,
		Domains:        opts.Domains,
		Namespaces:     opts.Namespaces,
		Fallback:       opts.Fallback,
		Wait:           opts.Wait,
		Relays:         d.relays,
	}, log)
	return d, nil
}

// dialerOwner is who a Dialer's relays belong to: this user, and this
// process (a Dialer has no file; its relays are its own).
func dialerOwner() relaypod.Owner {
	o := relaypod.Owner{User: "unknown", File: fmt.Sprintf("dialer-%d-%d", os.Getpid(), time.Now().UnixNano())}
	if u, err := user.Current(); err == nil {
		o.User = u.Username
	}
	o.Host, _ = os.Hostname()
	return o
}

// DialContext connects to addr. Cluster addresses go through a
// port-forward to a ready endpoint of the service; others go to Fallback
// or are refused. Only "tcp", "tcp4" and "tcp6" are supported. Errors wrap
// the causes above.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return d.d.DialContext(ctx, network, addr)
}

// Close closes every session (and so every connection) and stops every
// informer the Dialer started. Dials in flight return ErrClosed at once;
// dials after Close fail with ErrClosed.
func (d *Dialer) Close() error {
	err := d.d.Close()
	if d.relays != nil {
		ctx, cancel := context.WithTimeout(context.Background(), relayDeleteTimeout)
		defer cancel()
		err = errors.Join(err, d.relays.Close(ctx))
	}
	return err
}
