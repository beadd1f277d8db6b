package relaypod

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kpf-dev/kpf/internal/config"
	"github.com/kpf-dev/kpf/internal/relay"
)

// Labels and annotations on the Jobs and pods kpf creates.
const (
	labelName      = "app.kubernetes.io/name"
	labelManagedBy = "app.kubernetes.io/managed-by"
	// LabelOwner is a hash of the user and the config file a relay serves:
	// a later kpf up for the same file adopts or replaces what carries it.
	LabelOwner = "kpf.dev/owner"
	// LabelUser is the user's name, as far as a label value can hold it.
	LabelUser = "kpf.dev/user"
	// LabelFile is the config file's ID (control.FileID).
	LabelFile = "kpf.dev/file"
	// labelGroup is a hash of the context and relay settings: the relays
	// of one owner in one namespace that differ only in their
	// destinations share it, and replace one another.
	labelGroup = "kpf.dev/group"
	// LabelRelay, on the pod, is its Job's name: forwards find the pod by
	// it.
	LabelRelay = "kpf.dev/relay"

	annotationAllow = "kpf.dev/allow"
	annotationHost  = "kpf.dev/host"
)

// Name is the value of app.kubernetes.io/name on relay Jobs and pods.
const Name = "kpf-relay"

// Timing of a relay Job.
const (
	// activeDeadline bounds a relay's life whatever happens to kpf or to
	// its heartbeat; kpf replaces a relay that reached it.
	activeDeadline = 24 * 60 * 60
	// gracePeriod is the pod's terminationGracePeriodSeconds: the relay
	// exits at once on SIGTERM.
	gracePeriod = 2
)

// runAsUser is the relay's user and group: the conventional "nonroot" of
// distroless images. The image holds nothing but the program.
const runAsUser = 65532

// Owner is who a relay serves: one user's kpf for one config file.
type Owner struct {
	User string // the OS user's name
	File string // the config file's ID (control.FileID)
	Host string // the machine's name, for people reading the annotation
}

func (o Owner) hash() string { return shortHash(o.User, o.File) }

// jobSpec is one relay Job to create: its name and everything it is
// built from.
type jobSpec struct {
	owner     Owner
	context   string
	namespace string
	settings  config.Relay
	image     string
	dests     []relay.Dest // sorted
}

// group is the hash shared by the jobs that replace one another.
func (s jobSpec) group() string {
	return shortHash(s.context, s.namespace, settingsKey(s.settings), s.image)
}

// name is the Job's name: the same owner, group and destinations give the
// same name, so that a kpf that restarts finds the relay it left.
func (s jobSpec) name() string {
	parts := []string{s.owner.hash(), s.group()}
	for _, d := range s.dests {
		parts = append(parts, d.String())
	}
	return Name + "-" + shortHash(parts...)
}

// allow is the destinations as the relay's --allow flags and the Job's
// annotation write them.
func (s jobSpec) allow() []string {
	out := make([]string, len(s.dests))
	for i, d := range s.dests {
		out[i] = d.String()
	}
	return out
}

func (s jobSpec) labels() map[string]string {
	return map[string]string{
		labelName:      Name,
		labelManagedBy: "kpf",
		LabelOwner:     s.owner.hash(),
		LabelUser:      labelValue(s.owner.User),
		LabelFile:      labelValue(s.owner.File),
		labelGroup:     s.group(),
	}
}

// job builds the Job: one pod that runs the relay with the exact
// destinations, as little privilege as a pod can have, deleted by the
// cluster once it finishes (ttlSecondsAfterFinished: 0), which it does
// by itself when kpf's heartbeat stops.
func (s jobSpec) job() (*batchv1.Job, error) {
	name := s.name()
	podLabels := s.labels()
	podLabels[LabelRelay] = name
	resources, err := s.resources()
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, len(s.dests)+1)
	for _, a := range s.allow() {
		args = append(args, "--allow="+a)
	}
	args = append(args, "--heartbeat-timeout="+relay.DefaultHeartbeatTimeout.String())
	var tolerations []corev1.Toleration
	for _, t := range s.settings.Tolerations {
		tolerations = append(tolerations, corev1.Toleration{
			Key: t.Key, Operator: corev1.TolerationOperator(t.Operator), Value: t.Value,
			Effect: corev1.TaintEffect(t.Effect), TolerationSeconds: t.Seconds,
		})
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: s.namespace,
			Labels:    s.labels(),
			Annotations: map[string]string{
				annotationAllow: strings.Join(s.allow(), ","),
				annotationHost:  s.owner.Host,
			},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr(int32(0)),
			TTLSecondsAfterFinished: ptr(int32(0)),
			ActiveDeadlineSeconds:   ptr(int64(activeDeadline)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					AutomountServiceAccountToken:  ptr(false),
					EnableServiceLinks:            ptr(false),
					TerminationGracePeriodSeconds: ptr(int64(gracePeriod)),
					NodeSelector:                  s.settings.NodeSelector,
					Tolerations:                   tolerations,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr(true),
						RunAsUser:      ptr(int64(runAsUser)),
						RunAsGroup:     ptr(int64(runAsUser)),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "relay",
						Image: s.image,
						Args:  args,
						Ports: []corev1.ContainerPort{{Name: "relay", ContainerPort: relay.Port, Protocol: corev1.ProtocolTCP}},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr(false),
							ReadOnlyRootFilesystem:   ptr(true),
							RunAsNonRoot:             ptr(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
						Resources: resources,
					}},
				},
			},
		},
	}, nil
}

// resources returns the container's resources: the settings' requests and
// limits, each list replacing kpf's default one (config.Relay.Resources).
func (s jobSpec) resources() (corev1.ResourceRequirements, error) {
	requests, limits := s.settings.Resources()
	list := func(set map[string]string) (corev1.ResourceList, error) {
		out := corev1.ResourceList{}
		for name, v := range set {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return nil, fmt.Errorf("relay resources: %s %q: %w", name, v, err)
			}
			out[corev1.ResourceName(name)] = q
		}
		return out, nil
	}
	req, err := list(requests)
	if err != nil {
		return corev1.ResourceRequirements{}, err
	}
	lim, err := list(limits)
	if err != nil {
		return corev1.ResourceRequirements{}, err
	}
	return corev1.ResourceRequirements{Requests: req, Limits: lim}, nil
}

// settingsKey writes the settings that shape a relay pod in a stable
// order (Namespace is in the job's namespace, Image in its image).
func settingsKey(r config.Relay) string {
	var b strings.Builder
	kv := func(m map[string]string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b.WriteString(strconv.Quote(k) + "=" + strconv.Quote(m[k]) + ",")
		}
		b.WriteString(";")
	}
	kv(r.NodeSelector)
	for _, t := range r.Tolerations {
		fmt.Fprintf(&b, "%q %q %q %q ", t.Key, t.Operator, t.Value, t.Effect)
		if t.Seconds != nil {
			fmt.Fprint(&b, *t.Seconds)
		}
		b.WriteString(",")
	}
	b.WriteString(";")
	kv(r.Requests)
	kv(r.Limits)
	return b.String()
}

// shortHash is 10 hex digits of the SHA-256 of parts, each length-
// prefixed so that no two lists of parts collide by concatenation.
func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// labelValue makes s a valid label value: at most 63 characters of
// [A-Za-z0-9_.-], starting and ending with an alphanumeric one.
func labelValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '_'
		}
	}
	s = string(b)
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "-_.")
}

func ptr[T any](v T) *T { return &v }
