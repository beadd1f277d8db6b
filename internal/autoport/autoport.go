// Package autoport gives the automatic port mappings of forwards.yaml
// ("auto:5432") their local ports: it picks a free one the first time,
// remembers it for the user, file and forward in kpf's state directory,
// and gives the same one on every later start while it is free, so that
// bookmarks and .env files stay valid. When something else holds the
// remembered port, it picks another and says so.
package autoport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/statedir"
)

// Key names a mapping in the store: forward name and remote port, and
// "/udp" after a UDP one.
func Key(forward string, m config.PortMapping) string {
	k := forward + "/" + m.Remote.String()
	if m.Protocol == config.UDP {
		k += "/udp"
	}
	return k
}

// Store is the file that remembers a config file's automatic ports.
type Store struct {
	state, path string
}

// NewStore is the store of the config file with id (control.FileID) in
// stateDir, which the first Save creates (private, see statedir) with its
// ports/ subdirectory.
func NewStore(stateDir, id string) *Store {
	return &Store{state: stateDir, path: filepath.Join(stateDir, "ports", id+".json")}
}

type storeFile struct {
	Version int               `json:"version"`
	Ports   map[string]uint16 `json:"ports"`
}

// Load returns the remembered ports by Key; none when nothing was saved.
func (s *Store) Load() (map[string]uint16, error) {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]uint16{}, nil
	}
	if err != nil {
		return nil, err
	}
	var f storeFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", s.path, err)
	}
	if f.Ports == nil {
		f.Ports = map[string]uint16{}
	}
	return f.Ports, nil
}

// Save replaces the remembered ports, atomically (a reader sees the old
// file or the new one), with mode 0600.
func (s *Store) Save(ports map[string]uint16) error {
	for _, dir := range []string{s.state, filepath.Dir(s.path)} {
		if err := statedir.Private(dir); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(storeFile{Version: 1, Ports: ports}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".ports-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.path)
}

// Assigner gives automatic mappings their ports for one kpf up. It is
// used by one goroutine (the event loop).
type Assigner struct {
	store *Store // nil: nothing is remembered
	log   *slog.Logger
	// held are the ports of the forwards running now, by Key: a forward
	// that keeps running keeps its port, which its own listener holds.
	held map[string]uint16
}

// NewAssigner returns an Assigner remembering in store (nil remembers
// nothing).
func NewAssigner(store *Store, log *slog.Logger) *Assigner {
	return &Assigner{store: store, log: log, held: map[string]uint16{}}
}

// Assign sets the local port of every automatic mapping of forwards, in
// place (the Ports slices are copied first): the port the forward runs
// on now, else the remembered one if it is free, else a new free one. It
// remembers the result.
func (a *Assigner) Assign(ctx context.Context, forwards []config.Forward) error {
	remembered := map[string]uint16{}
	if a.store != nil {
		var err error
		if remembered, err = a.store.Load(); err != nil {
			a.log.Warn("cannot read the remembered automatic ports; picking new ones", "err", err)
			remembered = map[string]uint16{}
		}
	}
	var holding []io.Closer
	defer func() {
		for _, l := range holding {
			l.Close()
		}
	}()
	held := map[string]uint16{}
	changed := false
	for i := range forwards {
		f := &forwards[i]
		if !slices.ContainsFunc(f.Ports, func(m config.PortMapping) bool { return m.Auto }) {
			continue
		}
		f.Ports = slices.Clone(f.Ports)
		for j, m := range f.Ports {
			if !m.Auto {
				continue
			}
			key := Key(f.Name, m)
			port, ls, err := a.portFor(ctx, *f, key, remembered[key], m.Protocol)
			if err != nil {
				return fmt.Errorf("forward %s: automatic port for %s: %w", f.Name, m.Remote, err)
			}
			holding = append(holding, ls...)
			f.Ports[j].Local = port
			held[key] = port
			if remembered[key] != port {
				remembered[key], changed = port, true
			}
		}
	}
	a.held = held
	if changed && a.store == nil {
		a.log.Warn("automatic ports are not remembered (no state directory): the next start may pick others")
	}
	if changed && a.store != nil {
		if err := a.store.Save(remembered); err != nil {
			a.log.Warn("cannot remember the automatic ports; the next start may pick others", "err", err)
		}
	}
	return nil
}

// portFor is the port of one automatic mapping, with the listeners that
// hold a newly checked port until every mapping has one.
func (a *Assigner) portFor(ctx context.Context, f config.Forward, key string, remembered uint16, proto config.Protocol) (uint16, []io.Closer, error) {
	if p, ok := a.held[key]; ok {
		return p, nil, nil
	}
	if remembered != 0 {
		ls, err := forward.Listen(ctx, f, config.PortMapping{Local: remembered, Protocol: proto})
		if err == nil {
			return remembered, ls, nil
		}
		if !forward.IsAddrInUse(err) {
			return 0, nil, err
		}
		p, ls, err := pick(ctx, f, proto)
		if err == nil {
			a.log.Warn("the remembered automatic port is taken; using another", "forward", f.Name, "port", key, "remembered", remembered, "now", p)
		}
		return p, ls, err
	}
	p, ls, err := pick(ctx, f, proto)
	if err == nil {
		a.log.Info("picked an automatic port", "forward", f.Name, "port", key, "local", p)
	}
	return p, ls, err
}

// pick finds a port free on every address of f (localhost is two), and
// holds it.
func pick(ctx context.Context, f config.Forward, proto config.Protocol) (uint16, []io.Closer, error) {
	addrs := f.LocalAddrs()
	if len(addrs) == 0 {
		return 0, nil, fmt.Errorf("invalid local address %q", f.Address)
	}
	var lastErr error
	for range 20 {
		port, err := ephemeral(addrs[0], proto)
		if err != nil && len(addrs) > 1 {
			port, err = ephemeral(addrs[1], proto)
		}
		if err != nil {
			return 0, nil, err
		}
		ls, err := forward.Listen(ctx, f, config.PortMapping{Local: port, Protocol: proto})
		if err == nil {
			return port, ls, nil
		}
		if !forward.IsAddrInUse(err) {
			return 0, nil, err
		}
		lastErr = err
	}
	return 0, nil, fmt.Errorf("no port free on every address of %s after 20 tries: %w", f.Address, lastErr)
}

// ephemeral returns a port the system would give a socket of proto on
// addr now.
func ephemeral(addr netip.Addr, proto config.Protocol) (uint16, error) {
	hostPort := net.JoinHostPort(addr.String(), "0")
	if proto == config.UDP {
		c, err := net.ListenPacket("udp", hostPort)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return uint16(c.LocalAddr().(*net.UDPAddr).Port), nil
	}
	l, err := net.Listen("tcp", hostPort)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port), nil
}
