// Package localcluster builds and runs a small real Kubernetes control plane
// on loopback: etcd, kube-apiserver, kube-controller-manager and a node agent
// that stands in for the kubelet. It is what kpf's end-to-end tests,
// benchmarks and demo run against on machines without containers.
package localcluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options say which cluster to act on and where its files go.
type Options struct {
	// Name identifies the cluster; it is also the kube context's name.
	Name string
	// StateDir holds one directory per cluster (kubeconfig, logs, data).
	StateDir string
	// CacheDir holds the built binaries, shared by every cluster.
	CacheDir string
	// ModuleDir is the directory of the test/cluster Go module.
	ModuleDir string
	// Out receives progress messages.
	Out io.Writer
	// ExtraArgs appends flags to a component's command line, keyed by
	// component name ("etcd", "kube-apiserver", ...). Tests use it to make a
	// component fail on start.
	ExtraArgs map[string][]string
}

// Component is one running process of the cluster.
type Component struct {
	Name string `json:"name"`
	PID  int    `json:"pid"`
	Port int    `json:"port"`
	Log  string `json:"log"`
	// Bin and Args are the command line the component was started with, so
	// that StartComponent can start it again on the same port.
	Bin  string   `json:"bin,omitempty"`
	Args []string `json:"args,omitempty"`
}

// Cluster describes a running cluster; it is saved as state.json in the
// cluster's directory.
type Cluster struct {
	Name       string      `json:"name"`
	Dir        string      `json:"dir"`
	Kubeconfig string      `json:"kubeconfig"`
	Server     string      `json:"server"`
	NodeName   string      `json:"nodeName"`
	Components []Component `json:"components"`
	// AlreadyRunning is set when Up found the cluster running and left it.
	AlreadyRunning bool `json:"alreadyRunning,omitempty"`
}

var validName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$`)

// Component names, in start order.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	NodeAgent         = "node-agent"
)

// RelayBinary is the file in a cluster's directory (Cluster.Dir) that the
// node agent runs for pods of kpf's relay image (see nodeagent's
// DefaultRelayImage). The cluster does not build it: whoever needs relay
// pods installs kpf-relay there, before or after the cluster starts.
const RelayBinary = "kpf-relay"

func (o Options) dir() string { return filepath.Join(o.StateDir, o.Name) }

// Up starts the named cluster and waits until it is usable: the API server is
// ready, the node is Ready and the default ServiceAccount exists. If the
// cluster is already running and healthy, Up returns it untouched with
// AlreadyRunning set. If a component dies while starting, the error carries
// the last lines of its log.
func Up(ctx context.Context, o Options) (*Cluster, error) {
	if !validName.MatchString(o.Name) {
		return nil, fmt.Errorf("invalid cluster name %q: use lowercase letters, digits and '-'", o.Name)
	}
	if c, err := reuse(ctx, o); c != nil || err != nil {
		return c, err
	}
	bins, err := Build(ctx, o.ModuleDir, o.CacheDir, o.Out)
	if err != nil {
		return nil, err
	}
	dir, keys, err := prepareDir(o)
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	etcdPort, peerPort, apiPort, kcmPort, nodePort := ports[0], ports[1], ports[2], ports[3], ports[4]
	c := &Cluster{
		Name:       o.Name,
		Dir:        dir,
		Kubeconfig: filepath.Join(dir, "kubeconfig"),
		Server:     fmt.Sprintf("https://127.0.0.1:%d", apiPort),
		NodeName:   o.Name + "-node",
	}
	if err := writeKubeconfig(c.Kubeconfig, o.Name, c.Server, keys.CACert, keys.Token); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	s := &starter{o: o, c: c, dir: dir, bins: bins, keys: keys, procs: map[string]*process{}}
	etcdURL, err := s.etcd(ctx, etcdPort, peerPort)
	if err != nil {
		return nil, err
	}
	tlsClient, err := s.apiServer(ctx, etcdURL, apiPort)
	if err != nil {
		return nil, err
	}
	if err := s.controllers(ctx, tlsClient, kcmPort, nodePort); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// reuse returns the cluster named in o if it runs and is healthy; one
// with state but not healthy is removed (nil, nil: start it again).
func reuse(ctx context.Context, o Options) (*Cluster, error) {
	c, err := Load(o.StateDir, o.Name)
	if err != nil {
		return nil, nil
	}
	if err := c.Healthy(ctx); err == nil {
		c.AlreadyRunning = true
		return c, nil
	}
	fmt.Fprintf(o.Out, "cluster %q has state but is not healthy; removing it and starting again\n", o.Name)
	return nil, Down(ctx, o)
}

// prepareDir empties the cluster's state directory, creates its
// subdirectories and writes its keys and certificates.
func prepareDir(o Options) (string, *pki, error) {
	dir, err := filepath.Abs(o.dir())
	if err != nil {
		return "", nil, fmt.Errorf("resolve state dir: %w", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", nil, fmt.Errorf("clear %s: %w", dir, err)
	}
	for _, d := range []string{"logs", "etcd", "flex", "apiserver-certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", nil, fmt.Errorf("create state dir: %w", err)
		}
	}
	keys, err := writePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return "", nil, err
	}
	return dir, keys, nil
}

// starter starts a cluster's components one after another.
type starter struct {
	o     Options
	c     *Cluster
	dir   string
	bins  *Binaries
	keys  *pki
	procs map[string]*process
}

// start starts one component and records it in the cluster's state.
func (s *starter) start(name, bin string, port int, args []string) error {
	args = append(args, s.o.ExtraArgs[name]...)
	p, err := startProcess(name, bin, args, filepath.Join(s.dir, "logs", name+".log"))
	if err != nil {
		return err
	}
	s.procs[name] = p
	s.c.Components = append(s.c.Components, Component{Name: name, PID: p.cmd.Process.Pid, Port: port, Log: p.log, Bin: bin, Args: args})
	// Save after every start so that Down can clean up a partial start.
	return s.c.save()
}

// etcd starts etcd and waits until it is healthy; it returns its URL.
func (s *starter) etcd(ctx context.Context, port, peerPort int) (string, error) {
	fmt.Fprintf(s.o.Out, "starting etcd on 127.0.0.1:%d\n", port)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := s.start(Etcd, s.bins.Etcd, port, []string{
		"--name=" + s.o.Name, "--data-dir=" + filepath.Join(s.dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=" + s.o.Name + "=" + peerURL,
		"--unsafe-no-fsync", "--log-level=warn",
	}); err != nil {
		return "", err
	}
	if err := waitFor(ctx, 60*time.Second, s.procs[Etcd], func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, etcdURL+"/health", "")
	}); err != nil {
		return "", fmt.Errorf("etcd did not become healthy: %w", err)
	}
	return etcdURL, nil
}

// apiServer starts kube-apiserver and waits until it is ready; it returns
// a client that trusts the cluster's CA.
func (s *starter) apiServer(ctx context.Context, etcdURL string, apiPort int) (*http.Client, error) {
	keys := s.keys
	fmt.Fprintf(s.o.Out, "starting kube-apiserver %s on %s\n", KubernetesVersion, s.c.Server)
	if err := s.start(APIServer, s.bins.APIServer, apiPort, []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(s.dir, "apiserver-certs"),
		"--tls-cert-file=" + keys.APIServerCert, "--tls-private-key-file=" + keys.APIServerKey,
		"--client-ca-file=" + keys.CACert,
		"--token-auth-file=" + keys.TokenFile,
		// Bootstrap tokens are Secrets: tests revoke credentials by
		// deleting one and restore them by creating it again.
		"--enable-bootstrap-token-auth",
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + keys.SAPublic, "--service-account-signing-key-file=" + keys.SAPrivate,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority=" + keys.CACert,
		"--allow-privileged=true",
		"--profiling=false",
		"--v=1",
	}); err != nil {
		return nil, err
	}
	tlsClient, err := caClient(keys.CACert)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 120*time.Second, s.procs[APIServer], func(ctx context.Context) error {
		return httpOK(ctx, tlsClient, s.c.Server+"/readyz", keys.Token)
	}); err != nil {
		return nil, fmt.Errorf("kube-apiserver did not become ready: %w", err)
	}
	return tlsClient, nil
}

// controllers starts kube-controller-manager and the node agent and waits
// until the node is Ready and the default ServiceAccount exists.
func (s *starter) controllers(ctx context.Context, tlsClient *http.Client, kcmPort, nodePort int) error {
	keys := s.keys
	fmt.Fprintln(s.o.Out, "starting kube-controller-manager and the node agent")
	if err := s.start(ControllerManager, s.bins.ControllerManager, kcmPort, []string{
		"--kubeconfig=" + s.c.Kubeconfig,
		"--authentication-kubeconfig=" + s.c.Kubeconfig, "--authorization-kubeconfig=" + s.c.Kubeconfig,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort),
		"--leader-elect=false",
		"--service-account-private-key-file=" + keys.SAPrivate,
		"--root-ca-file=" + keys.CACert,
		"--flex-volume-plugin-dir=" + filepath.Join(s.dir, "flex"),
		"--cluster-name=" + s.o.Name,
		"--v=1",
	}); err != nil {
		return err
	}
	if err := s.start(NodeAgent, s.bins.NodeAgent, nodePort, []string{
		"--kubeconfig=" + s.c.Kubeconfig,
		"--node-name=" + s.c.NodeName,
		fmt.Sprintf("--listen=127.0.0.1:%d", nodePort),
		"--tls-cert=" + keys.NodeCert, "--tls-key=" + keys.NodeKey,
		"--relay-binary=" + filepath.Join(s.dir, RelayBinary),
	}); err != nil {
		return err
	}
	fmt.Fprintln(s.o.Out, "waiting for the node to be Ready and the default ServiceAccount to exist")
	if err := waitFor(ctx, 120*time.Second, nil, func(ctx context.Context) error {
		for _, name := range []string{ControllerManager, NodeAgent} {
			if err := s.procs[name].exited(); err != nil {
				return &fatalError{err}
			}
		}
		return clusterUsable(ctx, tlsClient, s.c, keys.Token)
	}); err != nil {
		return fmt.Errorf("cluster did not become usable: %w", err)
	}
	return nil
}

// Down stops the named cluster's processes and removes its state directory.
// Stopping a cluster that does not exist is not an error.
func Down(ctx context.Context, o Options) error {
	dir := o.dir()
	c, err := Load(o.StateDir, o.Name)
	if err == nil {
		c.stop()
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// Load reads the saved description of the named cluster.
func Load(stateDir, name string) (*Cluster, error) {
	data, err := os.ReadFile(filepath.Join(stateDir, name, "state.json"))
	if err != nil {
		return nil, fmt.Errorf("read cluster %q: %w", name, err)
	}
	var c Cluster
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("parse cluster %q state: %w", name, err)
	}
	return &c, nil
}

// Component returns the named component, or nil.
func (c *Cluster) Component(name string) *Component {
	for i := range c.Components {
		if c.Components[i].Name == name {
			return &c.Components[i]
		}
	}
	return nil
}

// Healthy reports whether every component process is alive and the API
// server answers /readyz.
func (c *Cluster) Healthy(ctx context.Context) error {
	for _, comp := range []string{Etcd, APIServer, ControllerManager, NodeAgent} {
		p := c.Component(comp)
		if p == nil || !c.owns(p.PID) {
			return fmt.Errorf("%s is not running", comp)
		}
	}
	client, err := caClient(filepath.Join(c.Dir, "pki", "ca.crt"))
	if err != nil {
		return err
	}
	token, err := c.adminToken()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return httpOK(ctx, client, c.Server+"/readyz", token)
}

func (c *Cluster) save() error {
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "state.json"), data, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

// owns reports whether pid is alive and is one of this cluster's processes
// (its command line names the cluster directory), so a reused pid is never
// signalled.
func (c *Cluster) owns(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// A zombie (state Z) has exited already.
		if _, rest, ok := strings.Cut(string(stat), ") "); ok && strings.HasPrefix(rest, "Z") {
			return false
		}
	}
	return strings.Contains(string(cmdline), c.Dir)
}

// stop signals every component, newest first, and waits for each to exit.
func (c *Cluster) stop() {
	for i := len(c.Components) - 1; i >= 0; i-- {
		pid := c.Components[i].PID
		if !c.owns(pid) {
			continue
		}
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(10 * time.Second)
		for c.owns(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if c.owns(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// process is a component started by Up. It runs in its own session so that
// it outlives the command that started it and ignores the terminal's Ctrl-C.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited returns an error with the last log lines if the process has ended.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); last lines of %s:\n%s", p.name, p.err, p.log, lastLines(p.log, 15))
	default:
		return nil
	}
}

type fatalError struct{ err error }

func (f *fatalError) Error() string { return f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

// waitFor polls check until it succeeds, the timeout passes, p exits, or
// check returns a *fatalError.
func waitFor(ctx context.Context, timeout time.Duration, p *process, check func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if p != nil {
			if err := p.exited(); err != nil {
				return err
			}
		}
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = check(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		var fatal *fatalError
		if errors.As(last, &fatal) {
			return fatal.err
		}
		select {
		case <-ctx.Done():
			if p != nil {
				return fmt.Errorf("%w (last: %v); last lines of %s:\n%s", ctx.Err(), last, p.log, lastLines(p.log, 15))
			}
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func lastLines(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// Holding every listener until all are chosen keeps them distinct; a port
// that is taken is never returned because the kernel picks only free ones.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func caClient(caPath string) (*http.Client, error) {
	pemData, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("read ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("no certificate in %s", caPath)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

func httpOK(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// clusterUsable checks, with plain REST calls, that the node is Ready and the
// default ServiceAccount exists.
func clusterUsable(ctx context.Context, client *http.Client, c *Cluster, token string) error {
	get := func(path string, into any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Server+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(into)
	}
	var node struct {
		Status struct {
			Conditions []struct{ Type, Status string } `json:"conditions"`
		} `json:"status"`
	}
	if err := get("/api/v1/nodes/"+c.NodeName, &node); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	ready := false
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" && cond.Status == "True" {
			ready = true
		}
	}
	if !ready {
		return errors.New("node is not Ready yet")
	}
	var sa map[string]any
	if err := get("/api/v1/namespaces/default/serviceaccounts/default", &sa); err != nil {
		return fmt.Errorf("default service account: %w", err)
	}
	return nil
}

func writeKubeconfig(path, name, server, caPath, token string) error {
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return fmt.Errorf("read ca: %w", err)
	}
	// JSON is valid YAML; encoding it avoids any quoting mistakes.
	cfg := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": name,
		"clusters": []any{map[string]any{"name": name, "cluster": map[string]any{
			"server": server, "certificate-authority-data": ca,
		}}},
		"users": []any{map[string]any{"name": name + "-admin", "user": map[string]any{"token": token}}},
		"contexts": []any{map[string]any{"name": name, "context": map[string]any{
			"cluster": name, "user": name + "-admin", "namespace": "default",
		}}},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encode kubeconfig: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// Port returns the component's port as a string, for messages.
func (c Component) String() string { return c.Name + ":" + strconv.Itoa(c.Port) }
