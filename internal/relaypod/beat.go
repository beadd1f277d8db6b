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
