package relaypod

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/connect/connecttest"
	"github.com/kpf-dev/kpf/internal/kube"
	"github.com/kpf-dev/kpf/internal/relay"
)

var owner = Owner{User: "ada", File: "0123456789abcdef", Host: "laptop"}

func dest(t *testing.T, s string) relay.Dest {
	t.Helper()
	d, err := relay.ParseDest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fixture is a manager over a fake context whose relay pods serve the
// relay protocol in memory and count heartbeats.
type fixture struct {
	c     *connecttest.Cluster
	m     *Manager
	beats chan string // pod name per heartbeat stream opened
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	c := connecttest.New()
	t.Cleanup(c.Close)
	m := New(c.Source(), owner, "ghcr.io/kpf-dev/kpf-relay:test", slog.New(slog.DiscardHandler))
	m.linger = 50 * time.Millisecond
	t.Cleanup(func() { m.Close(context.Background()) })
	return &fixture{c: c, m: m, beats: make(chan string, 100)}
}

// startPod makes the relay pod of job exist, serve and be ready.
func (f *fixture) startPod(ns, job, pod string) {
	f.c.Kubelet.Serve(ns, pod, relay.Port, func(c net.Conn) {
		req, err := relay.ReadRequest(c)
		if err != nil {
			return
		}
		if req.Kind == relay.Heartbeat {
			f.beats <- pod
		}
		relay.WriteReply(c, relay.Reply{Code: relay.OK})
		io.Copy(io.Discard, c)
	})
	f.c.SetReady(LabelRelay+"="+job, pod)
}

// waitJobs waits until the namespace's Jobs are exactly want (by name
// count), returning them.
func (f *fixture) waitJobs(t *testing.T, ns string, want int) []batchv1.Job {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := f.c.API.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == want {
			return list.Items
		}
		if time.Now().After(deadline) {
			var names []string
			for _, j := range list.Items {
				names = append(names, j.Name)
			}
			t.Fatalf("jobs in %s = %v, want %d", ns, names, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func resolveUntil(t *testing.T, h *Handle, d relay.Dest) []kube.Endpoint {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		eps, err := h.Resolve(d)
		if err == nil {
			return eps
		}
		if time.Now().After(deadline) {
			t.Fatalf("Resolve(%s) = %v", d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartsOneLeastPrivilegedRelayWithTheExactDestinations(t *testing.T) {
	f := newFixture(t)
	h := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	defer h.Release()
	db := dest(t, "db.example.com:5432")
	_, err := h.Resolve(db)
	if !errors.Is(err, kube.ErrNoReadyEndpoints) || !strings.Contains(err.Error(), `starting kpf's relay pod in namespace "backend" to reach db.example.com:5432/tcp`) {
		t.Fatalf("first Resolve = %v, want a wait that says what for", err)
	}
	job := f.waitJobs(t, "backend", 1)[0]
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	if want := []string{"--allow=db.example.com:5432/tcp", "--heartbeat-timeout=1m0s"}; !slices.Equal(c.Args, want) {
		t.Errorf("args = %q, want %q", c.Args, want)
	}
	checks := []struct {
		what string
		ok   bool
	}{
		{"image", c.Image == "ghcr.io/kpf-dev/kpf-relay:test"},
		{"no service-account token", *pod.AutomountServiceAccountToken == false},
		{"non-root", *pod.SecurityContext.RunAsNonRoot && *pod.SecurityContext.RunAsUser != 0 && *c.SecurityContext.RunAsNonRoot},
		{"seccomp RuntimeDefault", pod.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"read-only root", *c.SecurityContext.ReadOnlyRootFilesystem},
		{"no privilege escalation", !*c.SecurityContext.AllowPrivilegeEscalation},
		{"all capabilities dropped", slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}) && len(c.SecurityContext.Capabilities.Add) == 0},
		{"requests and limits", !c.Resources.Requests.Memory().IsZero() && !c.Resources.Limits.Memory().IsZero() && !c.Resources.Limits.Cpu().IsZero()},
		{"never restarted", pod.RestartPolicy == corev1.RestartPolicyNever && *job.Spec.BackoffLimit == 0},
		{"deleted by the cluster once finished", *job.Spec.TTLSecondsAfterFinished == 0},
		{"bounded life", job.Spec.ActiveDeadlineSeconds != nil && *job.Spec.ActiveDeadlineSeconds > 0},
		{"labels name kpf, the user and the file", job.Labels[labelManagedBy] == "kpf" && job.Labels[LabelUser] == "ada" && job.Labels[LabelFile] == owner.File},
		{"pod labelled with its job", job.Spec.Template.Labels[LabelRelay] == job.Name},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("relay job: not %s", c.what)
		}
	}

	f.startPod("backend", job.Name, "relay-1")
	eps := resolveUntil(t, h, db)
	if len(eps) != 1 || eps[0].Pod != "relay-1" || eps[0].Port != relay.Port || eps[0].Dest != "db.example.com:5432/tcp" {
		t.Fatalf("endpoints = %+v", eps)
	}
	select {
	case p := <-f.beats:
		if p != "relay-1" {
			t.Fatalf("heartbeat to %s", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no heartbeat stream to the relay pod")
	}
}

func TestSharedByForwardsAndReplacedWhenTheListChanges(t *testing.T) {
	f := newFixture(t)
	a := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	b := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	db, cache := dest(t, "db:5432"), dest(t, "cache:6379")
	a.Resolve(db)
	first := f.waitJobs(t, "backend", 1)[0].Name
	f.startPod("backend", first, "relay-1")
	resolveUntil(t, a, db)

	// Another forward's destination: a new relay with both; the old one
	// serves until it is ready, then goes.
	b.Resolve(cache)
	jobs := f.waitJobs(t, "backend", 2)
	var second string
	for _, j := range jobs {
		if j.Name != first {
			second = j.Name
			if !slices.Equal(j.Spec.Template.Spec.Containers[0].Args[:2], []string{"--allow=cache:6379/tcp", "--allow=db:5432/tcp"}) {
				t.Errorf("second relay's args = %q", j.Spec.Template.Spec.Containers[0].Args)
			}
		}
	}
	if eps, err := a.Resolve(db); err != nil || eps[0].Pod != "relay-1" {
		t.Fatalf("while the second relay starts, db resolves to %+v, %v; want the first relay", eps, err)
	}
	f.startPod("backend", second, "relay-2")
	if eps := resolveUntil(t, b, cache); eps[0].Pod != "relay-2" {
		t.Fatalf("cache resolves to %+v", eps)
	}
	if got := f.waitJobs(t, "backend", 1)[0].Name; got != second {
		t.Fatalf("left job %s, want %s", got, second)
	}

	// The last forward gone: the relay goes after the linger.
	a.Release()
	b.Release()
	f.waitJobs(t, "backend", 0)
}

func TestAdoptsTheRelayAnEarlierKpfLeft(t *testing.T) {
	f := newFixture(t)
	db := dest(t, "db:5432")
	spec := jobSpec{owner: owner, context: "ctx", namespace: "backend", image: "ghcr.io/kpf-dev/kpf-relay:test", dests: []relay.Dest{db}}
	old, err := spec.job()
	if err != nil {
		t.Fatal(err)
	}
	old.CreationTimestamp = metav1.NewTime(time.Now().Add(-time.Hour))
	if _, err := f.c.API.BatchV1().Jobs("backend").Create(context.Background(), old, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.startPod("backend", old.Name, "relay-old")
	h := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	defer h.Release()
	if eps := resolveUntil(t, h, db); eps[0].Pod != "relay-old" {
		t.Fatalf("resolves to %+v, want the adopted relay", eps)
	}
	if jobs := f.waitJobs(t, "backend", 1); jobs[0].Name != old.Name {
		t.Fatalf("jobs = %s", jobs[0].Name)
	}
}

func TestReplacesARelayThatFinished(t *testing.T) {
	f := newFixture(t)
	db := dest(t, "db:5432")
	spec := jobSpec{owner: owner, context: "ctx", namespace: "backend", image: "ghcr.io/kpf-dev/kpf-relay:test", dests: []relay.Dest{db}}
	old, _ := spec.job()
	old.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	f.c.API.BatchV1().Jobs("backend").Create(context.Background(), old, metav1.CreateOptions{})
	h := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	defer h.Release()
	_, err := h.Resolve(db)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(err.Error(), "replacing relay "+old.Name+", which completed") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		_, err = h.Resolve(db)
	}
	if !strings.Contains(err.Error(), "which completed") {
		t.Fatalf("Resolve = %v", err)
	}
	// Deleted, then created again under the same name.
	jobs := f.waitJobs(t, "backend", 1)
	if len(jobs[0].Status.Conditions) != 0 {
		t.Fatalf("the finished job is still there: %+v", jobs[0].Status)
	}
}

func TestForbiddenSaysWhichPermission(t *testing.T) {
	f := newFixture(t)
	f.c.API.PrependReactor("create", "jobs", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "batch", Resource: "jobs"}, "",
			errors.New(`User "dev" cannot create resource "jobs" in API group "batch" in the namespace "backend"`))
	})
	h := f.m.Acquire("ctx", "backend", config.Relay{}, nil)
	defer h.Release()
	db := dest(t, "db:5432")
	h.Resolve(db)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := h.Resolve(db)
		if err != nil && strings.Contains(err.Error(), "cannot create the relay Job") {
			if errors.Is(err, kube.ErrNoReadyEndpoints) || !strings.Contains(err.Error(), "jobs.batch") || !strings.Contains(err.Error(), `User "dev" cannot create`) {
				t.Fatalf("Resolve = %v: want a failure naming the permission and quoting the API server", err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Resolve = %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCloseDeletesEveryRelay(t *testing.T) {
	f := newFixture(t)
	for _, ns := range []string{"a", "b"} {
		h := f.m.Acquire("ctx", ns, config.Relay{}, nil)
		h.Resolve(dest(t, "db:5432"))
		f.waitJobs(t, ns, 1)
	}
	if err := f.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.waitJobs(t, "a", 0)
	f.waitJobs(t, "b", 0)
	h := f.m.Acquire("ctx", "a", config.Relay{}, nil)
	if _, err := h.Resolve(dest(t, "db:5432")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Resolve after Close = %v", err)
	}
}

func TestJobNamesAreStableAndDistinct(t *testing.T) {
	base := jobSpec{owner: owner, context: "ctx", namespace: "ns", image: "img", dests: []relay.Dest{{Kind: relay.TCP, Host: "db", Port: 5432}}}
	same := base
	if base.name() != same.name() {
		t.Fatal("same spec, different names")
	}
	for what, s := range map[string]jobSpec{
		"user":     {owner: Owner{User: "bob", File: owner.File}, context: "ctx", namespace: "ns", image: "img", dests: base.dests},
		"file":     {owner: Owner{User: "ada", File: "fedcba9876543210"}, context: "ctx", namespace: "ns", image: "img", dests: base.dests},
		"context":  {owner: owner, context: "other", namespace: "ns", image: "img", dests: base.dests},
		"image":    {owner: owner, context: "ctx", namespace: "ns", image: "img2", dests: base.dests},
		"protocol": {owner: owner, context: "ctx", namespace: "ns", image: "img", dests: []relay.Dest{{Kind: relay.UDP, Host: "db", Port: 5432}}},
		"settings": {owner: owner, context: "ctx", namespace: "ns", image: "img", dests: base.dests, settings: config.Relay{NodeSelector: map[string]string{"a": "b"}}},
	} {
		if s.name() == base.name() {
			t.Errorf("a different %s gives the same name", what)
		}
		if len(s.name()) > 63 {
			t.Errorf("name %q is longer than a label value may be", s.name())
		}
	}
	if got := labelValue("DOMAIN\\Ada Lovelace"); got != "DOMAIN_Ada_Lovelace" {
		t.Errorf("labelValue = %q", got)
	}
}
