package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect/connecttest"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
	"github.com/kpf-dev/kpf/internal/relaypod"
	"github.com/kpf-dev/kpf/internal/testsupport"
)

// The relay path against a fake context: kpf's relay manager creates its
// Job in a fake API, the test makes the relay pod ready, and the pod runs
// the real relay server in memory, reaching real loopback servers.

// relayFixture is a fake context whose relay pods serve the relay
// protocol with allow as the destinations.
type relayFixture struct {
	cl     *connecttest.Cluster
	relays *relaypod.Manager
}

func newRelayFixture(t *testing.T) *relayFixture {
	t.Helper()
	cl := connecttest.New()
	t.Cleanup(cl.Close)
	m := relaypod.New(cl.Source(), relaypod.Owner{User: "ada", File: "0123456789abcdef"}, "ghcr.io/kpf-dev/kpf-relay:test", slog.New(slog.DiscardHandler))
	t.Cleanup(func() { m.Close(context.Background()) })
	return &relayFixture{cl: cl, relays: m}
}

// runRelayPods makes every relay Job the manager creates in ns get a ready
// pod serving the destinations of its --allow flags, until the test ends.
func (f *relayFixture) runRelayPods(t *testing.T, ns string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		started := map[string]bool{}
		for ctx.Err() == nil {
			list, err := f.cl.API.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, j := range list.Items {
					if started[j.Name] {
						continue
					}
					started[j.Name] = true
					srv := &relay.Server{}
					for _, a := range j.Spec.Template.Spec.Containers[0].Args {
						if v, ok := strings.CutPrefix(a, "--allow="); ok {
							d, _ := relay.ParseDest(v)
							srv.Allow = append(srv.Allow, d)
						}
					}
					pod := j.Name + "-pod"
					f.cl.Kubelet.Serve(ns, pod, relay.Port, func(c net.Conn) { srv.ServeConn(ctx, c) })
					f.cl.SetReady(relaypod.LabelRelay+"="+j.Name, pod)
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
}

// loopbackEcho serves a TCP echo that answers once its client
// half-closes, and a UDP echo, on one port of 127.0.0.1.
func loopbackEcho(t *testing.T) uint16 {
	t.Helper()
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			continue
		}
		t.Cleanup(func() { ln.Close() })
		testsupport.ServeUDPEcho(t, pc)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					b, _ := io.ReadAll(c)
					c.Write(b)
				}()
			}
		}()
		return uint16(port)
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func exchangeTCP(t *testing.T, addr string, msg []byte) []byte {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write(msg)
		c.(*net.TCPConn).CloseWrite()
	}()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s: %v", addr, err)
	}
	return b
}

func TestHostForwardReachesItsDestinationThroughTheRelay(t *testing.T) {
	f := newRelayFixture(t)
	f.runRelayPods(t, "ns")
	f.cl.SetReady("web") // the namespace exists; the host target has no pods
	echo := loopbackEcho(t)
	e := startEngine(t, f.cl, Options{Relays: f.relays}, func(s *config.Forward) {
		s.Target = config.Target{Kind: config.Host, Name: "127.0.0.1"}
		s.Ports[0].Remote = config.Port{Number: echo}
	})
	msg := make([]byte, 256<<10)
	rand.Read(msg)
	if got := exchangeTCP(t, e.addr, msg); !bytes.Equal(got, msg) {
		t.Fatalf("got %d bytes back, want the %d sent", len(got), len(msg))
	}
	st := e.waitState(StateReady, "")
	if !strings.Contains(st.Pod, "kpf-relay-") {
		t.Errorf("ready on pod %q, want the relay's", st.Pod)
	}
}

// relay.namespace: the relay pod runs in another namespace than the
// forward's, the forward's session goes there, and its log line names
// the pod in that namespace.
func TestRelayInAnotherNamespace(t *testing.T) {
	f := newRelayFixture(t)
	f.runRelayPods(t, "relays")
	f.cl.SetReady("web")
	echo := loopbackEcho(t)
	var logs testsupport.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := startEngineLogging(t, f.cl, Options{Relays: f.relays}, log, func(s *config.Forward) {
		s.Target = config.Target{Kind: config.Host, Name: "127.0.0.1"}
		s.Ports[0].Remote = config.Port{Number: echo}
		s.Relay.Namespace = "relays"
	})
	if got := exchangeTCP(t, e.addr, []byte("elsewhere")); string(got) != "elsewhere" {
		t.Fatalf("got %q", got)
	}
	e.waitState(StateReady, "")
	if !strings.Contains(logs.String(), "msg=\"forward ready\" state=ready pod=relays/kpf-relay-") {
		t.Errorf("the ready line does not name the relay's namespace:\n%s", logs.String())
	}
}

func TestServiceWithoutPodsGoesThroughTheRelay(t *testing.T) {
	f := newRelayFixture(t)
	f.runRelayPods(t, "ns")
	echo := loopbackEcho(t)
	f.cl.SetError("web", &kube.NeedsRelay{Service: "web", Why: "an ExternalName service for localhost"})
	f.cl.SetRelayDest("web", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(echo))))
	e := startEngine(t, f.cl, Options{Relays: f.relays}, nil)
	if got := exchangeTCP(t, e.addr, []byte("through the relay")); string(got) != "through the relay" {
		t.Fatalf("got %q", got)
	}
}

func TestUDPThroughTheRelayIsByteExact(t *testing.T) {
	f := newRelayFixture(t)
	f.runRelayPods(t, "ns")
	f.cl.SetReady("web")
	echo := loopbackEcho(t)
	local, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(local.LocalAddr().(*net.UDPAddr).Port)
	local.Close()
	e := startEngine(t, f.cl, Options{Relays: f.relays}, func(s *config.Forward) {
		s.Target = config.Target{Kind: config.Host, Name: "127.0.0.1"}
		s.Ports = []config.PortMapping{{Local: port, Remote: config.Port{Number: echo}, Protocol: config.UDP}}
	})
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, relay.MaxDatagram)
	// One datagram at a time, each resent until its echo comes: UDP may
	// drop the first ones while the relay starts.
	for _, size := range []int{1, 512, 1400, 8192, relay.MaxDatagram} {
		want := make([]byte, size)
		rand.Read(want)
		got := false
		for try := 0; try < 50 && !got; try++ {
			c.Write(want)
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			got = err == nil && bytes.Equal(buf[:n], want)
		}
		if !got {
			t.Fatalf("no byte-exact echo of a %d-byte datagram through %s", size, e.addr)
		}
	}
}
