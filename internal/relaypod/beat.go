package relaypod

import (
	"context"
	"log/slog"
	"time"

	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// Dial opens a connection through the relay endpoint ep (one Resolve of a
// Handle returned, ep.Dest set) on lease: the relay's request goes first,
// with the frames that open the streams and ahead of first's bytes (see
// tunnel.Lease.DialPrefixed), so reaching a destination through the relay
// costs no round trip more than reaching a pod; the relay's answer is read
// with the first reply bytes. It returns the relay connection and the
// stream under it, for the caller's settings (InterruptibleWrites).
func Dial(ctx context.Context, lease *tunnel.Lease, ep kube.Endpoint, first *tunnel.FirstBytes) (*relay.Conn, *tunnel.Conn, error) {
	d, err := relay.ParseDest(ep.Dest)
	if err != nil {
		return nil, nil, err
	}
	req, err := relay.RequestFor(d)
	if err != nil {
		return nil, nil, err
	}
	tc, err := lease.DialPrefixed(ctx, tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod}, ep.Port, req, first)
	if err != nil {
		return nil, nil, err
	}
	return relay.Opened(tc), tc, nil
}

// beater keeps one relay pod alive with a heartbeat stream, opened again
// whenever it ends. It is used by one goroutine (its group's).
type beater struct {
	cluster connect.Cluster
	log     *slog.Logger

	pod    tunnel.Pod
	cancel context.CancelFunc
	done   chan struct{}
}

// beatRetry is the wait before a heartbeat stream is opened again.
const beatRetry = time.Second

// follow beats ep's pod, and stops beating the one beaten before.
func (b *beater) follow(ep kube.Endpoint) {
	pod := tunnel.Pod{Namespace: ep.Namespace, Name: ep.Pod}
	if b.cancel != nil && b.pod == pod {
		return
	}
	b.stop()
	ctx, cancel := context.WithCancel(context.Background())
	b.pod, b.cancel, b.done = pod, cancel, make(chan struct{})
	go b.beat(ctx, pod, b.done)
}

// stop ends the heartbeat and waits for its goroutine.
func (b *beater) stop() {
	if b.cancel == nil {
		return
	}
	b.cancel()
	<-b.done
	b.cancel = nil
}

func (b *beater) beat(ctx context.Context, pod tunnel.Pod, done chan<- struct{}) {
	defer close(done)
	lease := b.cluster.Sessions().Lease()
	defer lease.Close()
	for {
		conn, err := lease.Dial(ctx, pod, relay.Port)
		if err == nil {
			err = relay.Beat(ctx, conn, relay.HeartbeatInterval)
			conn.Close()
		}
		if ctx.Err() != nil {
			return
		}
		b.log.Debug("relay heartbeat ended; opening it again", "pod", pod.String(), "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(beatRetry):
		}
	}
}
