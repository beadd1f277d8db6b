// Package linksim puts a simulated network link between a client and a
// server on loopback: a toxiproxy server (github.com/Shopify/toxiproxy,
// a tool of tools/go.mod, run as a process) whose proxies add latency,
// blackhole the traffic or go down, driven through toxiproxy's HTTP API.
//
// The benchmark program and the end-to-end tests use it to put a far
// cluster's round trips between kpf (or kubectl) and the local cluster's
// kube-apiserver: a Link is one proxy, a Profile its steady latency.
//
// Latency is symmetric: half the round trip is added to each direction,
// to every chunk of data toxiproxy reads, in order, measured from when it
// was read; a profile's jitter is split the same way (each direction adds
// a uniform ±Jitter/2), so a round trip varies by at most ±Jitter.
package linksim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kpf-dev/kpf/internal/testsupport"
)

// Profile is a link's steady state: its round-trip time and jitter.
type Profile struct {
	// Name is how the command line and reports call it.
	Name string
	// RTT is the round trip the link adds.
	RTT time.Duration
	// Jitter is the most a round trip differs from RTT, either way.
	Jitter time.Duration
}

// The profiles the benchmark and tests use.
var (
	// LAN is a link in the same building: 2 ms round trip.
	LAN = Profile{Name: "lan", RTT: 2 * time.Millisecond}
	// WAN is a cluster in the same region over a VPN: 50 ms.
	WAN = Profile{Name: "wan", RTT: 50 * time.Millisecond}
	// Far is a cluster on another continent: 150 ms, ±10 ms.
	Far = Profile{Name: "far", RTT: 150 * time.Millisecond, Jitter: 10 * time.Millisecond}
)

// Profiles lists the named profiles, nearest first.
func Profiles() []Profile { return []Profile{LAN, WAN, Far} }

// ProfileNamed returns the profile called name.
func ProfileNamed(name string) (Profile, error) {
	var names []string
	for _, p := range Profiles() {
		if p.Name == name {
			return p, nil
		}
		names = append(names, p.Name)
	}
	return Profile{}, fmt.Errorf("unknown link %q (want %s)", name, strings.Join(names, ", "))
}

// String describes p, e.g. "far (150ms RTT ±10ms)".
func (p Profile) String() string {
	s := fmt.Sprintf("%s (%s RTT", p.Name, p.RTT)
	if p.Jitter > 0 {
		s += fmt.Sprintf(" ±%s", p.Jitter)
	}
	return s + ")"
}

// Build builds the toxiproxy server of repo's tools module into dir and
// returns its path. repo is the kpf repository's root.
func Build(ctx context.Context, repo, dir string) (string, error) {
	bin := filepath.Join(dir, "toxiproxy-server")
	cmd := exec.CommandContext(ctx, "go", "build", "-modfile=tools/go.mod", "-o", bin, "github.com/Shopify/toxiproxy/v2/cmd/server")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build toxiproxy-server: %w\n%s", err, out)
	}
	return bin, nil
}

// Server is a running toxiproxy server on loopback.
type Server struct {
	api  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	done chan struct{}
	log  *testsupport.Buffer
}

// Start runs the toxiproxy server bin with its API on a free loopback
// port and waits until the API answers. Close stops it.
func Start(ctx context.Context, bin string) (*Server, error) {
	var lastErr error
	for range 5 { // a free port found can be taken before the server binds it
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := start(ctx, bin, port)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(ctx context.Context, bin string, port int) (*Server, error) {
	s := &Server{api: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}), log: &testsupport.Buffer{}}
	s.cmd = exec.Command(bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	// Warnings and errors only: at info it logs every connection, which
	// a benchmark makes by the thousand.
	s.cmd.Env = append(os.Environ(), "LOG_LEVEL=warn")
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = procAttr()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start toxiproxy-server: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := s.call(ctx, http.MethodGet, "/version", nil, nil); err == nil {
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("toxiproxy-server exited: %s", strings.TrimSpace(s.log.String()))
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, fmt.Errorf("toxiproxy-server did not answer on %s within 10s: %s", s.api, strings.TrimSpace(s.log.String()))
		}
	}
}

// Close stops the server (it keeps no state worth a graceful stop); its
// links' connections end with it.
func (s *Server) Close() {
	s.cmd.Process.Kill()
	<-s.done
}

// Link is one proxy of the server: connections to Addr reach the
// upstream through the simulated link.
type Link struct {
	s        *Server
	name     string
	addr     string
	upstream string

	mu      sync.Mutex
	profile Profile
	toxics  map[string]bool // names of the toxics set
}

// Link creates a proxy listening on a free loopback port that forwards to
// upstream (host:port) with profile p's latency. name must be unique
// among the server's links (Close frees it).
func (s *Server) Link(ctx context.Context, name, upstream string, p Profile) (*Link, error) {
	var created struct {
		Listen string `json:"listen"`
	}
	body := map[string]any{"name": name, "listen": "127.0.0.1:0", "upstream": upstream, "enabled": true}
	if err := s.call(ctx, http.MethodPost, "/proxies", body, &created); err != nil {
		return nil, fmt.Errorf("create link %s to %s: %w", name, upstream, err)
	}
	l := &Link{s: s, name: name, addr: created.Listen, upstream: upstream, toxics: map[string]bool{}}
	if err := l.SetProfile(ctx, p); err != nil {
		return nil, err
	}
	return l, nil
}

// Close removes the link: its listener and every connection through it
// are closed.
func (l *Link) Close(ctx context.Context) error {
	if err := l.s.call(ctx, http.MethodDelete, "/proxies/"+l.name, nil, nil); err != nil {
		return fmt.Errorf("remove link %s: %w", l.name, err)
	}
	return nil
}

// Addr is the address clients connect to.
func (l *Link) Addr() string { return l.addr }

// Profile is the link's steady latency.
func (l *Link) Profile() Profile {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.profile
}

// The directions of a proxy's traffic: client to upstream, and back.
var directions = []string{"upstream", "downstream"}

// SetProfile sets the link's steady latency to p's.
func (l *Link) SetProfile(ctx context.Context, p Profile) error {
	l.mu.Lock()
	l.profile = p
	l.mu.Unlock()
	return l.setLatency(ctx, p.RTT, p.Jitter)
}

// setLatency adds rtt/2 ± jitter/2 to each direction (no toxic for 0).
func (l *Link) setLatency(ctx context.Context, rtt, jitter time.Duration) error {
	for _, dir := range directions {
		attrs := map[string]any{"latency": (rtt / 2).Milliseconds(), "jitter": (jitter / 2).Milliseconds()}
		if err := l.setToxic(ctx, "latency-"+dir, "latency", dir, attrs, rtt > 0); err != nil {
			return err
		}
	}
	return nil
}

// Spike sets the round trip to rtt (no jitter) until Steady.
func (l *Link) Spike(ctx context.Context, rtt time.Duration) error {
	return l.setLatency(ctx, rtt, 0)
}

// Steady puts the link back to its profile's latency.
func (l *Link) Steady(ctx context.Context) error {
	p := l.Profile()
	return l.setLatency(ctx, p.RTT, p.Jitter)
}

// Blackhole drops every byte either way, without closing a connection,
// until Heal: new connections are accepted and what they send is lost,
// as on a link that went silent. Toxiproxy closes the connections that
// were open during the blackhole when it is healed (its timeout toxic's
// cleanup), as a VPN or NAT that lost their state would.
func (l *Link) Blackhole(ctx context.Context) error {
	for _, dir := range directions {
		if err := l.setToxic(ctx, "blackhole-"+dir, "timeout", dir, map[string]any{"timeout": 0}, true); err != nil {
			return err
		}
	}
	return nil
}

// Heal ends a blackhole.
func (l *Link) Heal(ctx context.Context) error {
	for _, dir := range directions {
		if err := l.setToxic(ctx, "blackhole-"+dir, "timeout", dir, nil, false); err != nil {
			return err
		}
	}
	return nil
}

// Down takes the link down: its connections are closed and new ones
// refused, as when a VPN disconnects. Up brings it back.
func (l *Link) Down(ctx context.Context) error { return l.setEnabled(ctx, false) }

// Up brings the link back after Down.
func (l *Link) Up(ctx context.Context) error { return l.setEnabled(ctx, true) }

func (l *Link) setEnabled(ctx context.Context, on bool) error {
	if err := l.s.call(ctx, http.MethodPost, "/proxies/"+l.name, map[string]any{"enabled": on}, nil); err != nil {
		return fmt.Errorf("link %s enabled=%v: %w", l.name, on, err)
	}
	return nil
}

// setToxic creates, updates or (when !on) removes the toxic name.
func (l *Link) setToxic(ctx context.Context, name, typ, dir string, attrs map[string]any, on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	path := "/proxies/" + l.name + "/toxics"
	var err error
	switch {
	case !on && !l.toxics[name]:
		return nil
	case !on:
		err = l.s.call(ctx, http.MethodDelete, path+"/"+name, nil, nil)
		delete(l.toxics, name)
	case l.toxics[name]:
		err = l.s.call(ctx, http.MethodPost, path+"/"+name, map[string]any{"attributes": attrs}, nil)
	default:
		err = l.s.call(ctx, http.MethodPost, path, map[string]any{"name": name, "type": typ, "stream": dir, "toxicity": 1.0, "attributes": attrs}, nil)
		l.toxics[name] = err == nil
	}
	if err != nil {
		return fmt.Errorf("link %s: toxic %s: %w", l.name, name, err)
	}
	return nil
}

// call sends a request with body as JSON to the API and decodes the
// answer into out when not nil.
func (s *Server) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.api+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("toxiproxy %s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
