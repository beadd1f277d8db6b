package localcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Signals maps the names StopComponent's callers may use to signals.
var Signals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM,
	"INT":  syscall.SIGINT,
	"KILL": syscall.SIGKILL,
}

// ErrNotRunning is returned by StopComponent for a component that has
// already exited.
var ErrNotRunning = errors.New("not running")

// Running reports whether the named component's process is alive.
func (c *Cluster) Running(name string) bool {
	p := c.Component(name)
	return p != nil && c.owns(p.PID)
}

// StopComponent sends sig to the named component (SIGKILL to simulate a
// crash, SIGTERM for a clean stop) and waits until its process has exited,
// at most until ctx is done. The component keeps its entry in state.json, so
// StartComponent can start it again.
func (c *Cluster) StopComponent(ctx context.Context, name string, sig syscall.Signal) error {
	p := c.Component(name)
	if p == nil {
		return fmt.Errorf("cluster %q has no component %q", c.Name, name)
	}
	if !c.owns(p.PID) {
		return fmt.Errorf("%s: %w", name, ErrNotRunning)
	}
	if err := syscall.Kill(p.PID, sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", name, p.PID, err)
	}
	// A process stops showing its command line before the kernel has
	// closed its sockets; wait for its port to be released as well, so
	// that StartComponent can bind it again at once.
	for !gone(p.PID) || (p.Port != 0 && listening(p.Port)) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) did not exit after %v: %w", name, p.PID, sig, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

// StartComponent starts a stopped component again with the command line it
// was first started with (so on the same port and with the same data), waits
// until it is ready (etcd: /health; kube-apiserver: /readyz;
// kube-controller-manager: /healthz; node agent: its /healthz, served once
// it has registered its Node) and records its new pid in state.json. If the
// process exits while starting, the error carries the last lines of its log.
func (c *Cluster) StartComponent(ctx context.Context, name string) error {
	comp := c.Component(name)
	if comp == nil {
		return fmt.Errorf("cluster %q has no component %q", c.Name, name)
	}
	if c.owns(comp.PID) {
		return fmt.Errorf("%s is already running (pid %d)", name, comp.PID)
	}
	if comp.Bin == "" {
		return fmt.Errorf("%s: state.json lacks its command line (the cluster was started by an older kpfcluster; restart the cluster)", name)
	}
	p, err := startProcess(name, comp.Bin, comp.Args, comp.Log)
	if err != nil {
		return err
	}
	comp.PID = p.cmd.Process.Pid
	if err := c.save(); err != nil {
		return err
	}
	check, err := c.readiness(name, comp.Port)
	if err != nil {
		return err
	}
	if err := waitFor(ctx, 120*time.Second, p, check); err != nil {
		return fmt.Errorf("%s did not become ready: %w", name, err)
	}
	return nil
}

// readiness returns the check that tells when the named component serves.
func (c *Cluster) readiness(name string, port int) (func(context.Context) error, error) {
	caPath := filepath.Join(c.Dir, "pki", "ca.crt")
	switch name {
	case Etcd:
		url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
		return func(ctx context.Context) error { return httpOK(ctx, http.DefaultClient, url, "") }, nil
	case APIServer:
		client, err := caClient(caPath)
		if err != nil {
			return nil, err
		}
		token, err := c.adminToken()
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return httpOK(ctx, client, c.Server+"/readyz", token) }, nil
	case NodeAgent:
		client, err := caClient(caPath)
		if err != nil {
			return nil, err
		}
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
		return func(ctx context.Context) error { return httpOK(ctx, client, url, "") }, nil
	case ControllerManager:
		// It serves /healthz with a self-signed certificate of its own.
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
		return func(ctx context.Context) error { return httpOK(ctx, client, url, "") }, nil
	}
	return nil, fmt.Errorf("no readiness check for component %q", name)
}

// adminToken is the cluster's admin bearer token.
func (c *Cluster) adminToken() (string, error) {
	tok, err := os.ReadFile(filepath.Join(c.Dir, "pki", "tokens.csv"))
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	token, _, _ := strings.Cut(string(tok), ",")
	return token, nil
}

// gone reports whether pid has exited: no such process, or a zombie.
func gone(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, ok := strings.Cut(string(stat), ") ")
	return ok && (strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X"))
}

// listening reports whether something accepts connections on the loopback
// port.
func listening(port int) bool {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
