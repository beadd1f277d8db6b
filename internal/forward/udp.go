package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/tunnel"
)

// udpIdle ends a UDP peer's stream after this long without a datagram
// either way; its next datagram opens a new one. DNS answers within
// seconds; a longer exchange keeps its stream by talking.
const udpIdle = 60 * time.Second

// udpQueue is how many datagrams of one peer wait while its stream opens;
// more are dropped, as a full socket buffer drops them.
const udpQueue = 256

// maxUDPPeers bounds the streams one UDP socket keeps open: a DNS client
// asks each query from a new source port, and each would otherwise hold a
// stream (and a socket in the relay) for udpIdle. Past it, the peer heard
// from least recently loses its stream first.
const maxUDPPeers = 512

// udpServer serves one UDP mapping on one bound socket. UDP has no
// connections: each local peer (source address) gets a stream to the relay
// of its own, opened at its first datagram, over which datagrams travel
// framed both ways; the stream ends after udpIdle without a datagram.
type udpServer struct {
	pc net.PacketConn
	// dial opens a UDP stream to the relay, waiting for it as long as ctx
	// allows; label names where it goes.
	dial  func(ctx context.Context) (net.Conn, string, error)
	wait  time.Duration
	idle  time.Duration
	log   *slog.Logger
	stats *tunnel.Stats
	// maxPeers is maxUDPPeers, but for tests.
	maxPeers int

	mu    sync.Mutex
	peers map[string]*udpPeer
}

type udpPeer struct {
	addr  net.Addr
	queue chan []byte
	// last is when a datagram last went either way (UnixNano); evict
	// ends the peer's stream.
	last  atomic.Int64
	evict chan struct{}
}

// Serve reads datagrams until ctx ends (nil) or the socket fails (its
// error). Every peer's stream is closed when it returns.
func (s *udpServer) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.pc.Close() })
	defer stop()
	buf := make([]byte, relay.MaxDatagram+1)
	for {
		n, addr, err := s.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if n > relay.MaxDatagram {
			continue // cannot be sent on: dropped, as an oversized datagram is
		}
		s.stats.BytesIn.Add(int64(n))
		key := addr.String()
		s.mu.Lock()
		p := s.peers[key]
		if p == nil {
			s.evictOldest()
			p = &udpPeer{addr: addr, queue: make(chan []byte, udpQueue), evict: make(chan struct{})}
			p.last.Store(time.Now().UnixNano())
			s.peers[key] = p
			s.stats.Accepted.Add(1)
			wg.Go(func() { s.servePeer(ctx, key, p) })
		}
		s.mu.Unlock()
		select {
		case p.queue <- append([]byte(nil), buf[:n]...):
		default:
		}
	}
}

// evictOldest ends the stream of the peer heard from least recently when
// the socket has maxUDPPeers; the caller holds s.mu.
func (s *udpServer) evictOldest() {
	if len(s.peers) < s.maxPeers {
		return
	}
	var oldest string
	var at int64
	for k, p := range s.peers {
		if l := p.last.Load(); oldest == "" || l < at {
			oldest, at = k, l
		}
	}
	close(s.peers[oldest].evict)
	delete(s.peers, oldest) // its goroutine's delete finds it gone
}

// servePeer opens the peer's stream and carries its datagrams until the
// stream ends or stays idle, then forgets the peer (its next datagram
// starts again).
func (s *udpServer) servePeer(ctx context.Context, key string, p *udpPeer) {
	defer func() {
		s.mu.Lock()
		if s.peers[key] == p {
			delete(s.peers, key)
		}
		s.mu.Unlock()
	}()
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, s.wait)
	conn, label, err := s.dial(dctx)
	cancel()
	s.stats.Dial.Observe(time.Since(start))
	if err != nil {
		s.stats.Failed.Add(1)
		msg := err.Error()
		s.stats.LastError.Store(&msg)
		if ctx.Err() == nil {
			s.log.Warn("datagrams dropped: no stream to the relay", "client", p.addr.String(), "err", err)
		}
		return
	}
	s.stats.Active.Add(1)
	defer s.stats.Active.Add(-1)
	defer conn.Close()
	log := s.log.With("client", p.addr.String(), "to", label)
	log.Debug("UDP stream opened", "dial", time.Since(start).Round(time.Microsecond))

	activity := make(chan struct{}, 1)
	touch := func() {
		p.last.Store(time.Now().UnixNano())
		select {
		case activity <- struct{}{}:
		default:
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.copyToPeer(conn, p.addr, touch) }()
	idle := time.NewTimer(s.idle)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.evict:
			log.Debug("UDP stream closed: more peers than kept", "max", s.maxPeers)
			return
		case err := <-done:
			s.noteEnd(log, err)
			return
		case d := <-p.queue:
			if err := relay.WriteDatagram(conn, d); err != nil {
				s.noteEnd(log, err)
				return
			}
			touch()
		case <-activity:
			idle.Reset(s.idle)
		case <-idle.C:
			log.Debug("UDP stream closed: idle", "after", s.idle)
			return
		}
	}
}

// copyToPeer sends the stream's datagrams to the peer until the stream
// ends.
func (s *udpServer) copyToPeer(conn net.Conn, to net.Addr, touch func()) error {
	buf := make([]byte, relay.MaxDatagram)
	for {
		n, err := relay.ReadDatagram(conn, buf)
		if err != nil {
			return err
		}
		touch()
		if _, err := s.pc.WriteTo(buf[:n], to); err == nil {
			s.stats.BytesOut.Add(int64(n))
		}
	}
}

func (s *udpServer) noteEnd(log *slog.Logger, err error) {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	msg := err.Error()
	s.stats.LastError.Store(&msg)
	if _, ok := errors.AsType[*relay.ReplyError](err); ok {
		log.Warn("UDP stream refused", "err", err)
		return
	}
	log.Debug("UDP stream ended", "err", err)
}
