// Package doctor checks, before kpf up, that the forwards of a file can
// work on this machine: the kubeconfig and its contexts, each API server
// (reached, credentials accepted, its version), each namespace (it exists,
// the user has the permissions kpf needs), each target (it exists, has
// ready pods, its ports resolve), each local port and proxy address (free).
//
// It only reads: from the cluster it lists and gets, and asks
// SelfSubjectReview and SelfSubjectAccessReview questions, which change
// nothing. It runs the exec credential plugin of a context once.
package doctor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/forward"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/suggest"
)

// Status is the outcome of one check.
type Status string

// The outcomes of a check.
const (
	OK Status = "ok"
	// Failed: kpf up would not work for this part; Message says why and
	// what to do.
	Failed Status = "failed"
	// Warning: not a failure, but worth knowing (a fact doctor could not
	// check with the user's permissions).
	Warning Status = "warning"
	// Skipped: not checked, because a check it depends on failed.
	Skipped Status = "skipped"
)

// Check is one line of the report.
type Check struct {
	// Section is what the check is about, as a heading: "kubeconfig",
	// "context NAME", "namespace CONTEXT/NS", "forward NAME", "proxy".
	Section string `json:"section"`
	// Name says which check: kubeconfig, context, server, credentials,
	// version, namespace, permissions, target, local-port, proxy.
	Name   string `json:"check"`
	Status Status `json:"status"`
	// Message is the finding, or for a failure the cause and what to do.
	Message string `json:"message"`
	// Context, Namespace and Forward say which part of the file the check
	// is about, where that applies.
	Context   string `json:"context,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Forward   string `json:"forward,omitempty"`
}

// Report is the outcome of Run.
type Report struct {
	// OK is true when no check failed.
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Running is what doctor needs of a kpf up that already runs the file:
// its ports are its own, not taken by another process.
type Running struct {
	PID int
	// Forwards are the names of the forwards it runs.
	Forwards []string
}

// Options are the inputs of Run.
type Options struct {
	// Config is the parsed file; Forwards the forwards to check (enabled
	// ones, selected by name or group).
	Config   *config.Config
	Forwards []config.Forward
	// Kubeconfig is the loaded kubeconfig; KubeconfigErr why it could not
	// be loaded (then Kubeconfig is nil).
	Kubeconfig    *kube.Kubeconfig
	KubeconfigErr error
	// DefaultContext is --context: the context of forwards that name none,
	// before the kubeconfig's current-context.
	DefaultContext string
	// Timeout bounds each request to an API server.
	Timeout time.Duration
	// Running is the kpf up already running the file, or nil.
	Running *Running
}

// Run checks everything Options names and returns the report, in the
// order: kubeconfig, each context (in file order), each namespace, each
// forward, the proxy. Contexts are checked concurrently. It returns early,
// with what it has, when ctx is done.
func Run(ctx context.Context, o Options) Report {
	o.Timeout = cmp.Or(o.Timeout, 10*time.Second)
	var checks []Check
	checks = append(checks, kubeconfigCheck(o))

	// The contexts in file order, and the forwards of each.
	var contexts []string
	byContext := map[string][]config.Forward{}
	var unresolved []config.Forward
	for _, f := range o.Forwards {
		name := cmp.Or(f.Context, o.DefaultContext)
		if name == "" && o.Kubeconfig != nil {
			name = o.Kubeconfig.CurrentContext()
		}
		if name == "" {
			unresolved = append(unresolved, f)
			continue
		}
		if _, ok := byContext[name]; !ok {
			contexts = append(contexts, name)
		}
		byContext[name] = append(byContext[name], f)
	}
	if len(unresolved) > 0 {
		msg := "no context: the forwards name none, --context names none and the kubeconfig has no current-context; set defaults.context in forwards.yaml, pass --context, or run kubectl config use-context NAME"
		if o.Kubeconfig != nil {
			_, err := o.Kubeconfig.ResolveContext("")
			msg = err.Error()
		}
		checks = append(checks, Check{Section: "context", Name: "context", Status: Failed, Message: msg})
		checks = skipForwards(ctx, o, checks, unresolved, "", "it has no context")
	}

	var clusters *kube.Clusters
	if o.Kubeconfig != nil {
		clusters = kube.NewClusters(o.Kubeconfig, slog.New(slog.DiscardHandler))
	}
	results := make([][]Check, len(contexts))
	var wg sync.WaitGroup
	for i, name := range contexts {
		wg.Go(func() {
			results[i] = checkContext(ctx, o, clusters, name, byContext[name])
		})
	}
	wg.Wait()
	for _, r := range results {
		checks = append(checks, r...)
	}
	checks = append(checks, proxyChecks(ctx, o)...)

	rep := Report{OK: true, Checks: checks}
	for _, c := range checks {
		if c.Status == Failed || c.Status == Skipped {
			rep.OK = false
		}
	}
	if ctx.Err() != nil {
		rep.OK = false
	}
	return rep
}

func skipped(section, context, ns, fwd, why string) Check {
	return Check{Section: section, Name: "target", Status: Skipped, Message: "not checked: " + why, Context: context, Namespace: ns, Forward: fwd}
}

// kubeconfigCheck says which kubeconfig files were read.
func kubeconfigCheck(o Options) Check {
	c := Check{Section: "kubeconfig", Name: "kubeconfig"}
	if o.KubeconfigErr != nil {
		c.Status, c.Message = Failed, o.KubeconfigErr.Error()
		return c
	}
	files, searched := o.Kubeconfig.Files()
	if len(files) == 0 {
		c.Status = Failed
		c.Message = fmt.Sprintf("no kubeconfig found (looked for %s); point KUBECONFIG or --kubeconfig at one, or create ~/.kube/config (your cluster's login tool writes it)", strings.Join(searched, ", "))
		return c
	}
	n := len(o.Kubeconfig.Contexts())
	c.Status = OK
	c.Message = fmt.Sprintf("read %s (%d %s)", strings.Join(files, ", "), n, plural(n, "context", "contexts"))
	return c
}

// checkContext checks one context and then the namespaces and forwards
// that use it.
func checkContext(ctx context.Context, o Options, clusters *kube.Clusters, name string, fwds []config.Forward) []Check {
	section := "context " + name
	var out []Check
	add := func(check string, st Status, msg string) {
		out = append(out, Check{Section: section, Name: check, Status: st, Message: msg, Context: name})
	}
	skipAll := func(why string) []Check {
		return skipForwards(ctx, o, out, fwds, name, why)
	}
	if clusters == nil {
		return skipAll("no kubeconfig")
	}
	cl, err := clusters.Get(name)
	if err != nil {
		add("context", Failed, err.Error())
		return skipAll(fmt.Sprintf("context %q cannot be used", name))
	}
	add("context", OK, fmt.Sprintf("server %s, %s", cl.Config.Host, authKind(cl)))

	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	reach, err := cl.Reach(rctx)
	cancel()
	if err != nil {
		add("server", Failed, explainTimeout(err, o.Timeout))
		return skipAll(fmt.Sprintf("the API server of context %q cannot be reached", name))
	}
	add("server", OK, fmt.Sprintf("answered in %s (round trip %s)", ms(reach.First), ms(reach.RoundTrip)))

	rctx, cancel = context.WithTimeout(ctx, o.Timeout)
	user, err := cl.WhoAmI(rctx)
	cancel()
	if err != nil {
		add("credentials", Failed, explainTimeout(err, o.Timeout))
		return skipAll(fmt.Sprintf("the API server of context %q does not accept the credentials", name))
	}
	if user == "" {
		add("credentials", OK, "accepted")
	} else {
		add("credentials", OK, "accepted, you are "+user)
	}

	v := reach.Version
	if v == "" {
		rctx, cancel = context.WithTimeout(ctx, o.Timeout)
		v, err = cl.ServerVersion(rctx)
		cancel()
	}
	switch {
	case err != nil:
		add("version", Warning, "unknown: "+err.Error())
	default:
		add("version", OK, "Kubernetes "+v)
	}

	// Namespaces in file order, each with the forwards in it.
	var namespaces []string
	byNS := map[string][]config.Forward{}
	for _, f := range fwds {
		if _, ok := byNS[f.Namespace]; !ok {
			namespaces = append(namespaces, f.Namespace)
		}
		byNS[f.Namespace] = append(byNS[f.Namespace], f)
	}
	for _, ns := range namespaces {
		out = append(out, checkNamespace(ctx, o, cl, ns, byNS[ns])...)
	}
	return out
}

// authKind says how the context authenticates, without any secret.
func authKind(cl *kube.Cluster) string {
	cfg := cl.Config
	switch {
	case cfg.ExecProvider != nil:
		return fmt.Sprintf("credentials from the exec plugin %q", cfg.ExecProvider.Command)
	case cfg.AuthProvider != nil:
		return fmt.Sprintf("credentials from the auth provider %q", cfg.AuthProvider.Name)
	case cfg.BearerToken != "" || cfg.BearerTokenFile != "":
		return "token credentials"
	case len(cfg.CertData) > 0 || cfg.CertFile != "":
		return "client certificate credentials"
	case cfg.Username != "":
		return "basic-auth credentials"
	default:
		return "no credentials"
	}
}

// checkNamespace checks that ns exists and allows what kpf needs, then
// each forward in it.
func checkNamespace(ctx context.Context, o Options, cl *kube.Cluster, ns string, fwds []config.Forward) []Check {
	section := fmt.Sprintf("namespace %s/%s", cl.Name, ns)
	var out []Check
	add := func(check string, st Status, msg string) {
		out = append(out, Check{Section: section, Name: check, Status: st, Message: msg, Context: cl.Name, Namespace: ns})
	}
	var kinds []config.TargetKind
	for _, f := range fwds {
		kinds = append(kinds, f.Target.Kind)
	}

	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	_, err := cl.Client.CoreV1().Namespaces().Get(rctx, ns, metav1.GetOptions{})
	cancel()
	nsFound := err == nil
	switch {
	case err == nil:
		add("namespace", OK, "exists")
	case apierrors.IsNotFound(err):
		msg := fmt.Sprintf("namespace %q does not exist in context %q", ns, cl.Name)
		if s := closestNamespace(ctx, o, cl, ns); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		}
		add("namespace", Failed, msg+" (fix the namespace in forwards.yaml)")
		return skipForwards(ctx, o, out, fwds, cl.Name, fmt.Sprintf("namespace %q does not exist", ns))
	case apierrors.IsForbidden(err):
		// kpf does not need namespaces; many users may not get them.
		// The targets found below prove it exists.
	default:
		add("namespace", Failed, explainTimeout(kube.Explain(err, cl.Name, cl.Config), o.Timeout))
		return skipForwards(ctx, o, out, fwds, cl.Name, "the namespace could not be read")
	}

	st, msg := permissionsCheck(ctx, o, cl, ns, kinds)
	add("permissions", st, msg)

	rctx, cancel = context.WithTimeout(ctx, o.Timeout)
	snap, err := cl.Snapshot(rctx, ns, kinds...)
	cancel()
	if err != nil {
		for _, f := range fwds {
			out = append(out, Check{Section: "forward " + f.Name, Name: "target", Status: Failed,
				Message: explainTimeout(err, o.Timeout), Context: cl.Name, Namespace: ns, Forward: f.Name})
			out = append(out, localPortChecks(ctx, o, f)...)
		}
		return out
	}
	found := false
	var fchecks []Check
	relayNamespaces := map[string]bool{}
	for _, f := range fwds {
		c, ok, relay := targetCheck(snap, cl.Name, ns, f)
		found = found || ok
		if relay {
			relayNamespaces[cmp.Or(f.Relay.Namespace, ns)] = true
		}
		fchecks = append(fchecks, c)
		fchecks = append(fchecks, localPortChecks(ctx, o, f)...)
	}
	for _, rns := range slices.Sorted(maps.Keys(relayNamespaces)) {
		st, msg := relayPermissionsCheck(ctx, o, cl, rns)
		add("relay", st, msg)
	}
	if !nsFound {
		// Insert the namespace line before the permissions line.
		c := Check{Section: section, Name: "namespace", Context: cl.Name, Namespace: ns}
		if found {
			c.Status, c.Message = OK, "exists (a target was found in it; you may not get namespaces, which kpf does not need)"
		} else {
			c.Status, c.Message = Warning, "not checked: you may not get namespaces, and no target was found in it; is the namespace right?"
		}
		out = slices.Insert(out, 0, c)
	}
	return append(out, fchecks...)
}

// permissionsCheck asks whether the user may do in ns what kpf needs for
// targets of kinds, and says which it may not.
func permissionsCheck(ctx context.Context, o Options, cl *kube.Cluster, ns string, kinds []config.TargetKind) (Status, string) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	denied, reasons, err := cl.Denied(rctx, ns, kube.Permissions(kinds...))
	switch {
	case err != nil:
		return Failed, explainTimeout(err, o.Timeout)
	case len(denied) > 0:
		var what []string
		for i, p := range denied {
			s := p.String()
			if reasons[i] != "" {
				s += " (" + reasons[i] + ")"
			}
			what = append(what, s)
		}
		return Failed, fmt.Sprintf("not allowed in namespace %q: %s; ask for the Role in kpf's docs/rbac.md (check with kubectl auth can-i %s -n %s)",
			ns, strings.Join(what, ", "), denied[0], ns)
	default:
		return OK, "allowed: " + summarize(kube.Permissions(kinds...))
	}
}

// relayPermissionsCheck asks whether the user may run kpf's relay in ns,
// and says which permission it lacks.
func relayPermissionsCheck(ctx context.Context, o Options, cl *kube.Cluster, ns string) (Status, string) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	perms := kube.RelayPermissions()
	denied, _, err := cl.Denied(rctx, ns, perms)
	switch {
	case err != nil:
		return Failed, explainTimeout(err, o.Timeout)
	case len(denied) > 0:
		var what []string
		for _, p := range denied {
			what = append(what, p.String())
		}
		return Failed, fmt.Sprintf("kpf's relay is not allowed in namespace %q: %s; ask for the Role in kpf's docs/relay.md (check with kubectl auth can-i %s -n %s)",
			ns, strings.Join(what, ", "), denied[0], ns)
	}
	return OK, fmt.Sprintf("kpf may run its relay in namespace %q: %s", ns, summarize(perms))
}

// skipForwards adds to out, for each of fwds, that its target was not
// checked and why, and the checks of its local ports, which need no
// cluster.
func skipForwards(ctx context.Context, o Options, out []Check, fwds []config.Forward, context, why string) []Check {
	for _, f := range fwds {
		out = append(out, skipped("forward "+f.Name, context, f.Namespace, f.Name, why))
		out = append(out, localPortChecks(ctx, o, f)...)
	}
	return out
}

// closestNamespace is the namespace of cl closest to ns, if the user may
// list them.
func closestNamespace(ctx context.Context, o Options, cl *kube.Cluster, ns string) string {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	l, err := cl.Client.CoreV1().Namespaces().List(rctx, metav1.ListOptions{Limit: 500})
	if err != nil {
		return ""
	}
	names := make([]string, len(l.Items))
	for i, n := range l.Items {
		names[i] = n.Name
	}
	return suggest.Closest(ns, names)
}

// targetCheck resolves each port of f in the snapshot, as kpf up would,
// and reports whether the target was found and whether the forward goes
// through kpf's relay.
func targetCheck(snap *kube.NamespaceSnapshot, context, ns string, f config.Forward) (c Check, found, relay bool) {
	c = Check{Section: "forward " + f.Name, Name: "target", Context: context, Namespace: ns, Forward: f.Name}
	if rc, ok, isRelay := relayTargetCheck(snap, c, ns, f); isRelay {
		return rc, ok, true
	}
	c, found = podTargetCheck(snap, c, ns, f)
	return c, found, false
}

// relayTargetCheck checks a forward that kpf's relay carries: a host, a
// service that no pod backs, a UDP port. isRelay is false for a forward
// to pods.
func relayTargetCheck(snap *kube.NamespaceSnapshot, c Check, ns string, f config.Forward) (Check, bool, bool) {
	relayNS := cmp.Or(f.Relay.Namespace, ns)
	var dests []string
	for _, m := range f.Ports {
		udp := m.Protocol == config.UDP
		proto := m.Protocol.String()
		switch {
		case f.Target.Kind == config.Host:
			dests = append(dests, fmt.Sprintf("%s/%s", net.JoinHostPort(f.Target.Name, m.Remote.String()), proto))
			continue
		case f.Target.Kind != config.Service:
			return c, false, false
		}
		if !udp {
			if _, err := snap.Resolve(f.Target, m.Remote); !errors.Is(err, kube.ErrNeedsRelay) {
				return c, false, false
			}
		}
		host, port, err := snap.RelayDest(f.Target.Name, m.Remote, udp)
		if err != nil {
			c.Status, c.Message = Failed, err.Error()
			return c, !strings.Contains(err.Error(), "not found"), true
		}
		dests = append(dests, fmt.Sprintf("%s/%s", net.JoinHostPort(host, strconv.Itoa(int(port))), proto))
	}
	c.Status = OK
	c.Message = fmt.Sprintf("%s: reached through kpf's relay, which kpf up starts in namespace %q, to %s (the destination is reached from inside the cluster: not checked from here)",
		f.Target, relayNS, strings.Join(dests, ", "))
	return c, true, true
}

// podTargetCheck resolves each port of f to pods in the snapshot, and
// reports whether the target was found.
func podTargetCheck(snap *kube.NamespaceSnapshot, c Check, ns string, f config.Forward) (Check, bool) {
	var pods []string
	var ports []string
	for _, m := range f.Ports {
		eps, err := snap.Resolve(f.Target, m.Remote)
		switch {
		case errors.Is(err, kube.ErrNoReadyEndpoints):
			c.Status = Failed
			c.Message = fmt.Sprintf("%s has no ready pod in namespace %q; kpf up waits for one (see why with kubectl get pods -n %s, kubectl describe %s -n %s)",
				f.Target, ns, ns, kubectlRef(f.Target), ns)
			return c, f.Target.Kind != config.Selector
		case err != nil:
			c.Status = Failed
			c.Message = err.Error()
			if strings.Contains(err.Error(), "not found") {
				if s := suggest.Closest(f.Target.Name, snap.Names(f.Target.Kind)); s != "" {
					c.Message += fmt.Sprintf("; did you mean %q?", s)
				}
				return c, false
			}
			return c, true
		}
		for _, ep := range eps {
			if !slices.Contains(pods, ep.Pod) {
				pods = append(pods, ep.Pod)
			}
		}
		if m.Remote.Name != "" || int(eps[0].Port) != int(m.Remote.Number) {
			ports = append(ports, fmt.Sprintf("%s → pod port %d", m.Remote, eps[0].Port))
		} else {
			ports = append(ports, m.Remote.String())
		}
	}
	c.Status = OK
	shown := pods
	if len(shown) > 3 {
		shown = append(slices.Clone(shown[:3]), "...")
	}
	c.Message = fmt.Sprintf("%s: %d ready %s (%s); %s %s", f.Target, len(pods), plural(len(pods), "pod", "pods"),
		strings.Join(shown, ", "), plural(len(ports), "port", "ports"), strings.Join(ports, ", "))
	return c, true
}

// kubectlRef is the target as kubectl describe takes it.
func kubectlRef(t config.Target) string {
	switch t.Kind {
	case config.Selector:
		return "pods -l " + t.Selector
	case config.Service:
		return "service/" + t.Name
	case config.Pod:
		return "pod/" + t.Name
	case config.Deployment:
		return "deployment/" + t.Name
	case config.StatefulSet:
		return "statefulset/" + t.Name
	}
	return t.String()
}

// localPortChecks binds and releases each local port of f, as kpf up
// would bind it.
func localPortChecks(ctx context.Context, o Options, f config.Forward) []Check {
	var out []Check
	for _, m := range f.Ports {
		c := Check{Section: "forward " + f.Name, Name: "local-port", Context: f.Context, Namespace: f.Namespace, Forward: f.Name}
		if m.Auto {
			c.Status, c.Message = OK, fmt.Sprintf("auto:%s: kpf up picks a free port on %s and keeps it (kpf env shows it)", m.Remote, f.Address)
			out = append(out, c)
			continue
		}
		addr := net.JoinHostPort(f.Address, strconv.Itoa(int(m.Local)))
		err := forward.CheckListen(ctx, f, m)
		switch {
		case err == nil:
			c.Status, c.Message = OK, addr+" is free"
		case forward.IsAddrInUse(err) && o.Running != nil && slices.Contains(o.Running.Forwards, f.Name):
			c.Status, c.Message = OK, fmt.Sprintf("%s is in use by the kpf up already running this file (pid %d)", addr, o.Running.PID)
		default:
			c.Status, c.Message = Failed, err.Error()
		}
		out = append(out, c)
	}
	return out
}

// proxyChecks binds and releases each proxy address.
func proxyChecks(ctx context.Context, o Options) []Check {
	p := o.Config.Proxy
	if p == nil {
		return nil
	}
	var out []Check
	for _, l := range []struct{ kind, addr string }{{"socks5", p.SOCKS5}, {"http", p.HTTP}} {
		if l.addr == "" {
			continue
		}
		c := Check{Section: "proxy", Name: "proxy"}
		ap, err := netip.ParseAddrPort(l.addr)
		if err == nil {
			// The proxy binds its address as a forward binds its
			// local port; the same check gives the same words.
			spec := config.Forward{Address: ap.Addr().String(), AllowNonLoopback: true}
			err = forward.CheckListen(ctx, spec, config.PortMapping{Local: ap.Port()})
		}
		switch {
		case err == nil:
			c.Status, c.Message = OK, fmt.Sprintf("%s %s is free", l.kind, l.addr)
		case forward.IsAddrInUse(err) && o.Running != nil:
			c.Status, c.Message = OK, fmt.Sprintf("%s %s is in use, by the kpf up already running this file (pid %d) if it runs the proxy", l.kind, l.addr, o.Running.PID)
		default:
			c.Status, c.Message = Failed, fmt.Sprintf("%s %s: %v", l.kind, l.addr, err)
		}
		out = append(out, c)
	}
	return out
}

// explainTimeout names the timeout when err is one.
func explainTimeout(err error, d time.Duration) string {
	if ce, ok := errors.AsType[*kube.ClusterError](err); ok && ce.Cause == kube.CauseTimeout {
		return fmt.Sprintf("%s; it gave no answer in %s (--timeout)", err, d)
	}
	return err.Error()
}

// summarize lists permissions by verb set: "list, watch services, pods;
// get, create pods/portforward".
func summarize(ps []kube.Permission) string {
	var order []string
	verbs := map[string][]string{}
	for _, p := range ps {
		r := strings.TrimPrefix(p.String(), p.Verb+" ")
		if _, ok := verbs[r]; !ok {
			order = append(order, r)
		}
		verbs[r] = append(verbs[r], p.Verb)
	}
	var groups []string
	byVerbs := map[string][]string{}
	for _, r := range order {
		v := strings.Join(verbs[r], ", ")
		if _, ok := byVerbs[v]; !ok {
			groups = append(groups, v)
		}
		byVerbs[v] = append(byVerbs[v], r)
	}
	parts := make([]string, len(groups))
	for i, v := range groups {
		parts[i] = v + " " + strings.Join(byVerbs[v], ", ")
	}
	return strings.Join(parts, "; ")
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
