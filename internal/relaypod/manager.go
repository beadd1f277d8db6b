// Package relaypod runs kpf's relay pods (see package relay) in the
// clusters: one Job per context, namespace and relay settings that some
// forward needs, started on the first need with the exact destinations
// the forwards reach, replaced when that list changes, kept alive by a
// heartbeat, and deleted when the last forward that needs it stops or kpf
// exits. A kpf that dies leaves a relay that exits by itself when the
// heartbeat stops, and which the cluster then deletes
// (ttlSecondsAfterFinished); the next kpf for the same user and file
// adopts or replaces what it finds.
package relaypod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
)

// Manager runs the relay pods of one kpf process. Its methods are safe for
// concurrent use.
type Manager struct {
	clusters connect.ClusterSource
	owner    Owner
	image    string
	log      *slog.Logger
	// Linger is how long a relay outlives the last forward that needed it,
	// so that a forward restarted by a reload keeps it.
	linger time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	groups map[groupKey]*group
	closed bool
}

// groupKey identifies the relays that replace one another.
type groupKey struct {
	context, namespace, settings, image string
}

// retireTimeout bounds deleting a relay no forward needs any more.
const retireTimeout = 10 * time.Second

// DefaultLinger is how long a relay outlives the last forward that
// needed it.
const DefaultLinger = 2 * time.Second

// New returns a Manager that creates relays for owner from image (the
// default relay image; a forward's relay settings may name another).
func New(clusters connect.ClusterSource, owner Owner, image string, log *slog.Logger) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{clusters: clusters, owner: owner, image: image, log: log, linger: DefaultLinger,
		ctx: ctx, cancel: cancel, groups: map[groupKey]*group{}}
}

// ErrClosed is returned by a Handle of a closed Manager.
var ErrClosed = errors.New("relay manager closed")

// Acquire returns a Handle through which a forward of context kctx and
// namespace reaches destinations through the relay that settings
// describe. onChange is called (it should only kick) whenever the
// Handle's Resolve may answer differently. Release the Handle when done.
func (m *Manager) Acquire(kctx, namespace string, settings config.Relay, onChange func()) *Handle {
	ns := settings.Namespace
	if ns == "" {
		ns = namespace
	}
	image := settings.Image
	if image == "" {
		image = m.image
	}
	key := groupKey{kctx, ns, settingsKey(settings), image}
	h := &Handle{onChange: onChange, dests: map[relay.Dest]bool{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		h.err = ErrClosed
		return h
	}
	g := m.groups[key]
	if g == nil {
		g = m.newGroup(key, settings)
		m.groups[key] = g
		m.wg.Go(func() { g.run(m.ctx) })
	}
	h.g = g
	g.addHandle(h)
	return h
}

// Close stops every relay's heartbeat and deletes the Jobs this Manager
// created or adopted, waiting for the API server's answers until ctx
// ends. It returns the deletions that failed.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	m.closed = true
	groups := make([]*group, 0, len(m.groups))
	for _, g := range m.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range groups {
		wg.Go(func() {
			if err := g.deleteAll(ctx, ""); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Relays describes the relays running now, for status and doctor.
func (m *Manager) Relays() []Status {
	m.mu.Lock()
	groups := make([]*group, 0, len(m.groups))
	for _, g := range m.groups {
		groups = append(groups, g)
	}
	m.mu.Unlock()
	var out []Status
	for _, g := range groups {
		out = append(out, g.status())
	}
	slices.SortFunc(out, func(a, b Status) int {
		if c := compareStrings(a.Context, b.Context); c != 0 {
			return c
		}
		return compareStrings(a.Namespace, b.Namespace)
	})
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Status is one relay as Relays reports it.
type Status struct {
	Context, Namespace string
	Job                string // "" while none was created
	Pod                string // "" until ready
	Dests              []string
	Ready              bool
	Since              time.Time // when the Job was created or adopted
	// Reason says why the relay is not ready.
	Reason string
}

// Handle is one forward's use of a relay.
type Handle struct {
	g        *group
	onChange func()
	err      error // set for a handle of a closed Manager

	mu    sync.Mutex
	dests map[relay.Dest]bool
}

// Resolve returns the relay pod's endpoints for reaching dest (each with
// Dest set), adding dest to what the relay may reach if it is new to it.
// While the relay that reaches dest is starting it returns an error that
// wraps kube.ErrNoReadyEndpoints and says what is waited for; when it
// cannot be started, why (for example the API server's refusal to create
// Jobs).
func (h *Handle) Resolve(dest relay.Dest) ([]kube.Endpoint, error) {
	if h.err != nil {
		return nil, h.err
	}
	h.mu.Lock()
	added := !h.dests[dest]
	h.dests[dest] = true
	h.mu.Unlock()
	if added {
		h.g.use(dest)
	}
	return h.g.endpoints(dest)
}

// Release gives the handle's destinations back; the relay goes when no
// handle needs it. Release is idempotent.
func (h *Handle) Release() {
	if h.g == nil {
		return
	}
	h.mu.Lock()
	dests := h.dests
	h.dests = map[relay.Dest]bool{}
	h.mu.Unlock()
	h.g.removeHandle(h, dests)
}

// group is the relays of one key: the current one, which serves, and the
// one being brought up to replace it when the destinations changed.
type group struct {
	m        *Manager
	key      groupKey
	settings config.Relay
	log      *slog.Logger
	kick     chan struct{}

	mu       sync.Mutex
	handles  map[*Handle]bool
	dests    map[relay.Dest]int // how many handles need each
	idleAt   time.Time          // when the last handle left; zero while one holds it
	current  *relayJob
	pending  *relayJob
	reason   error // why no relay serves a destination now
	resolver func(dest relay.Dest) ([]kube.Endpoint, error)
}

// relayJob is one relay Job kpf created or adopted.
type relayJob struct {
	name    string
	allowed map[relay.Dest]bool
	since   time.Time
	pod     string // its ready pod, once known
}

func (m *Manager) newGroup(key groupKey, settings config.Relay) *group {
	return &group{m: m, key: key, settings: settings, kick: make(chan struct{}, 1),
		log:     m.log.With("context", key.context, "namespace", key.namespace),
		handles: map[*Handle]bool{}, dests: map[relay.Dest]int{}}
}

func (g *group) addHandle(h *Handle) {
	g.mu.Lock()
	g.handles[h] = true
	g.idleAt = time.Time{}
	g.mu.Unlock()
}

func (g *group) removeHandle(h *Handle, dests map[relay.Dest]bool) {
	g.mu.Lock()
	delete(g.handles, h)
	for d := range dests {
		if g.dests[d]--; g.dests[d] <= 0 {
			delete(g.dests, d)
		}
	}
	if len(g.handles) == 0 {
		g.idleAt = time.Now()
	}
	g.mu.Unlock()
	g.poke()
}

func (g *group) use(d relay.Dest) {
	g.mu.Lock()
	g.dests[d]++
	g.mu.Unlock()
	g.poke()
}

func (g *group) poke() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// notify tells every handle that Resolve may answer differently.
func (g *group) notify() {
	g.mu.Lock()
	fns := make([]func(), 0, len(g.handles))
	for h := range g.handles {
		if h.onChange != nil {
			fns = append(fns, h.onChange)
		}
	}
	g.mu.Unlock()
	for _, f := range fns {
		f()
	}
}

// starting is Resolve's error while the relay that reaches a destination
// is being started.
type starting struct {
	dest   relay.Dest
	ns     string
	detail string
}

func (e *starting) Error() string {
	s := fmt.Sprintf("starting kpf's relay pod in namespace %q to reach %s", e.ns, e.dest)
	if e.detail != "" {
		s += ": " + e.detail
	}
	return s
}

func (e *starting) Unwrap() error { return kube.ErrNoReadyEndpoints }

func (g *group) endpoints(d relay.Dest) ([]kube.Endpoint, error) {
	g.mu.Lock()
	cur, reason, resolve := g.current, g.reason, g.resolver
	g.mu.Unlock()
	if cur != nil && cur.allowed[d] && resolve != nil {
		eps, err := resolve(d)
		if err == nil {
			return eps, nil
		}
		g.poke() // its pod is gone or not ready: look at its Job
		return nil, &starting{dest: d, ns: g.key.namespace, detail: "relay " + cur.name + ": " + err.Error()}
	}
	if st, ok := reason.(*starting); ok {
		// The group's reason names one destination; say this one.
		c := *st
		c.dest = d
		return nil, &c
	}
	if reason != nil {
		return nil, reason
	}
	return nil, &starting{dest: d, ns: g.key.namespace}
}

func (g *group) status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Status{Context: g.key.context, Namespace: g.key.namespace}
	job := g.current
	if g.pending != nil {
		job = g.pending
	}
	if job != nil {
		s.Job, s.Since = job.name, job.since
		for d := range job.allowed {
			s.Dests = append(s.Dests, d.String())
		}
		slices.Sort(s.Dests)
	}
	s.Ready = g.current != nil && g.pending == nil
	if s.Ready {
		s.Pod = g.current.pod
	}
	if g.reason != nil {
		s.Reason = g.reason.Error()
	}
	return s
}

// spec returns the Job the group's destinations call for now, and
// whether any destination is needed.
func (g *group) spec() (jobSpec, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	dests := make([]relay.Dest, 0, len(g.dests))
	for d := range g.dests {
		dests = append(dests, d)
	}
	slices.SortFunc(dests, func(a, b relay.Dest) int { return compareStrings(a.String(), b.String()) })
	return jobSpec{
		owner: g.m.owner, context: g.key.context, namespace: g.key.namespace,
		settings: g.settings, image: g.key.image, dests: dests,
	}, len(dests) > 0
}

// errNotReady is what reconcile returns while a relay is coming up: try
// again soon.
var errNotReady = errors.New("relay not ready yet")

// run keeps the group's relay converged to its destinations until ctx
// ends, or until the group has had no handle for the linger time (it then
// deletes its Jobs).
func (g *group) run(ctx context.Context) {
	cl, err := g.m.clusters(g.key.context)
	if err != nil {
		g.setReason(err)
		<-ctx.Done()
		return
	}
	ns, release := cl.Watch(g.key.namespace, g.poke)
	defer release()
	g.mu.Lock()
	g.resolver = func(d relay.Dest) ([]kube.Endpoint, error) { return g.relayEndpoints(ns, d) }
	g.mu.Unlock()
	b := &beater{cluster: cl, log: g.log}
	defer b.stop()

	delay := time.Duration(0)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(max(delay, time.Millisecond))
		if delay == 0 {
			timer.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-g.kick:
			// Forwards starting together each add their destinations:
			// take them all into one relay rather than one after another.
			if !settle(ctx, g.kick, settleTime) {
				return
			}
		case <-timer.C:
		}
		if g.idle() {
			if g.lingered() {
				if g.retire(ctx) {
					return
				}
				delay = time.Second
				continue
			}
			delay = g.m.linger
			continue
		}
		err := g.reconcile(ctx, cl, ns, b)
		switch {
		case err == nil:
			delay = 0
		case errors.Is(err, errNotReady):
			// The namespace's changes wake the loop as the pod comes up;
			// this only bounds how stale the reason shown can be.
			delay = min(max(delay*2, 200*time.Millisecond), 2*time.Second)
		default:
			delay = min(max(delay*2, time.Second), 15*time.Second)
		}
	}
}

// settleTime is how long the destinations must stay unchanged before the
// relay is (re)created for them.
const settleTime = 20 * time.Millisecond

// settle waits until kick stays quiet for d (at most 10 d); false means
// ctx ended.
func settle(ctx context.Context, kick <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	deadline := time.After(10 * d)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-kick:
			t.Reset(d)
		case <-t.C:
			return true
		case <-deadline:
			return true
		}
	}
}

func (g *group) idle() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.handles) == 0
}

func (g *group) lingered() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.handles) == 0 && !g.idleAt.IsZero() && time.Since(g.idleAt) >= g.m.linger
}

// retire removes the group from the manager, unless a handle came
// meanwhile, then deletes its Jobs; it reports whether the group is gone.
// The deletion happens outside the manager's lock: an Acquire meanwhile
// starts a new group, which replaces a Job still being deleted.
func (g *group) retire(ctx context.Context) bool {
	g.m.mu.Lock()
	if !g.idle() {
		g.m.mu.Unlock()
		return false
	}
	delete(g.m.groups, g.key)
	g.m.mu.Unlock()
	// Close waits for this deletion rather than cut it short: the group
	// is no longer among those it deletes.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retireTimeout)
	defer cancel()
	if err := g.deleteAll(dctx, ""); err != nil {
		g.log.Warn("could not delete the relay; it exits by itself within a minute, its heartbeat stopped", "err", err)
	}
	return true
}

func (g *group) setReason(err error) {
	g.mu.Lock()
	changed := (g.reason == nil) != (err == nil) || err != nil && g.reason.Error() != err.Error()
	g.reason = err
	g.mu.Unlock()
	if changed {
		g.notify()
	}
}

// relayEndpoints returns the current relay pod's endpoints for dest.
func (g *group) relayEndpoints(ns connect.Resolver, d relay.Dest) ([]kube.Endpoint, error) {
	g.mu.Lock()
	cur := g.current
	g.mu.Unlock()
	if cur == nil {
		return nil, kube.ErrNoReadyEndpoints
	}
	eps, err := ns.Resolve(relayTarget(cur.name), config.Port{Number: relay.Port})
	for i := range eps {
		eps[i].Dest = d.String()
	}
	return eps, err
}

func relayTarget(job string) config.Target {
	return config.Target{Kind: config.Selector, Selector: LabelRelay + "=" + job}
}

// reconcile takes one step towards a ready relay for the group's
// destinations: create or adopt its Job, wait for its pod, switch to it
// and delete the Jobs it replaces.
func (g *group) reconcile(ctx context.Context, cl connect.Cluster, ns connect.Resolver, b *beater) error {
	spec, needed := g.spec()
	if !needed {
		return nil
	}
	name := spec.name()
	g.mu.Lock()
	cur, pending := g.current, g.pending
	g.mu.Unlock()
	if cur != nil && cur.name == name {
		if eps, err := ns.Resolve(relayTarget(name), config.Port{Number: relay.Port}); err == nil {
			g.mu.Lock()
			cur.pod = eps[0].Pod
			g.mu.Unlock()
			b.follow(eps[0])
			return nil
		}
		// Its pod is gone or not ready: find out why from its Job.
		cur = nil
		g.mu.Lock()
		g.current = nil
		g.mu.Unlock()
		b.stop()
	}
	if pending == nil || pending.name != name {
		job, err := g.ensureJob(ctx, cl, spec)
		if err != nil {
			g.setReason(err)
			if _, ok := errors.AsType[*starting](err); ok {
				return errNotReady // an old Job being deleted: look again soon
			}
			return err
		}
		pending = job
		g.mu.Lock()
		g.pending = job
		g.mu.Unlock()
	}
	eps, err := ns.Resolve(relayTarget(name), config.Port{Number: relay.Port})
	if err != nil {
		detail, failed := g.podTrouble(ctx, cl, name)
		if failed != nil {
			// The Job cannot serve: delete it and start again.
			g.deleteJob(ctx, cl, name)
			g.mu.Lock()
			g.pending = nil
			g.mu.Unlock()
			g.setReason(failed)
			return failed
		}
		g.setReason(&starting{dest: spec.dests[0], ns: g.key.namespace, detail: detail})
		return errNotReady
	}
	g.mu.Lock()
	pending.pod = eps[0].Pod
	g.current, g.pending, g.reason = pending, nil, nil
	g.mu.Unlock()
	g.log.Info("relay ready", "job", name, "pod", eps[0].Pod, "allow", spec.allow())
	b.follow(eps[0])
	g.notify()
	if err := g.deleteAll(ctx, name); err != nil {
		g.log.Warn("could not delete a relay it replaced", "err", err)
	}
	return nil
}

// ensureJob creates the Job of spec, or adopts the one of that name that
// a kpf before this one left running; one that finished or is being
// deleted is deleted and created again (on a later call).
func (g *group) ensureJob(ctx context.Context, cl connect.Cluster, spec jobSpec) (*relayJob, error) {
	job, err := spec.job()
	if err != nil {
		return nil, err
	}
	jobs := cl.Client().BatchV1().Jobs(spec.namespace)
	allowed := map[relay.Dest]bool{}
	for _, d := range spec.dests {
		allowed[d] = true
	}
	rj := &relayJob{name: job.Name, allowed: allowed, since: time.Now()}
	_, err = jobs.Create(ctx, job, metav1.CreateOptions{})
	if err == nil {
		g.log.Info("created relay", "job", job.Name, "allow", spec.allow())
		return rj, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, g.explain(cl, "create the relay Job", err)
	}
	old, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil {
		return nil, g.explain(cl, "read the relay Job", err)
	}
	if old.DeletionTimestamp != nil || finished(old) != "" {
		g.deleteJob(ctx, cl, job.Name)
		return nil, &starting{dest: spec.dests[0], ns: spec.namespace, detail: "replacing relay " + job.Name + ", which " + orDeleted(finished(old))}
	}
	g.log.Info("adopted relay", "job", job.Name, "since", old.CreationTimestamp.Time)
	rj.since = old.CreationTimestamp.Time
	return rj, nil
}

func orDeleted(why string) string {
	if why == "" {
		return "is being deleted"
	}
	return why
}

// finished says how a Job ended, or "" while it runs.
func finished(j *batchv1.Job) string {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return "completed (its relay exited: no heartbeat)"
		case batchv1.JobFailed:
			return "failed: " + c.Reason + " " + c.Message
		}
	}
	return ""
}

// podTrouble says what the relay pod of job waits for (detail), or why it
// cannot serve (failed): it ended, or its Job failed.
func (g *group) podTrouble(ctx context.Context, cl connect.Cluster, job string) (detail string, failed error) {
	pods, err := cl.Client().CoreV1().Pods(g.key.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{LabelRelay: job}.String(),
	})
	if err != nil || len(pods.Items) == 0 {
		if j, err := cl.Client().BatchV1().Jobs(g.key.namespace).Get(ctx, job, metav1.GetOptions{}); err == nil {
			if why := finished(j); why != "" {
				return "", fmt.Errorf("relay %s %s", job, why)
			}
		} else if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("relay %s was deleted", job)
		}
		return "waiting for its pod to be created", nil
	}
	p := pods.Items[0]
	switch p.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return "", fmt.Errorf("relay pod %s ended (%s)", p.Name, p.Status.Phase)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			if w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName" {
				return fmt.Sprintf("pod %s cannot pull %s (%s: %s); set relay.image to an image the cluster can pull", p.Name, cs.Image, w.Reason, w.Message), nil
			}
			return fmt.Sprintf("pod %s: %s %s", p.Name, w.Reason, w.Message), nil
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return fmt.Sprintf("pod %s is not scheduled: %s", p.Name, c.Message), nil
		}
	}
	return fmt.Sprintf("pod %s is %s", p.Name, p.Status.Phase), nil
}

// deleteAll deletes the group's Jobs except keep.
func (g *group) deleteAll(ctx context.Context, keep string) error {
	cl, err := g.m.clusters(g.key.context)
	if err != nil {
		return err
	}
	spec, _ := g.spec()
	list, err := cl.Client().BatchV1().Jobs(g.key.namespace).List(ctx, metav1.ListOptions{
		LabelSelector: labels.Set{LabelOwner: g.m.owner.hash(), labelGroup: spec.group()}.String(),
	})
	if err != nil {
		return g.explain(cl, "list relay Jobs", err)
	}
	var errs []error
	for _, j := range list.Items {
		if j.Name == keep || j.DeletionTimestamp != nil {
			continue
		}
		if err := g.deleteJob(ctx, cl, j.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteJob deletes a relay Job and, through the garbage collector, its
// pod.
func (g *group) deleteJob(ctx context.Context, cl connect.Cluster, name string) error {
	bg := metav1.DeletePropagationBackground
	err := cl.Client().BatchV1().Jobs(g.key.namespace).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return g.explain(cl, "delete relay Job "+name, err)
	}
	g.log.Info("deleted relay", "job", name)
	return nil
}

// explain words an API error about the relay's Job, naming the
// permission kpf lacks when it is a denial.
func (g *group) explain(cl connect.Cluster, what string, err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("cannot %s in namespace %q: %w (the relay needs create, get, list and delete on jobs.batch there; see docs/relay.md)", what, g.key.namespace, err)
	}
	return fmt.Errorf("%s in namespace %q: %w", what, g.key.namespace, err)
}
