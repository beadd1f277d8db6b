package config

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kpf-dev/kpf/internal/suggest"
)

// The relay block: how kpf runs the relay pod through which forwards reach
// hosts, UDP ports and services without pods. This file decodes and checks
// it; the pod itself is internal/relaypod's.

// The toleration operators and taint effects of a pod spec.
const (
	operatorExists = "Exists"
	operatorEqual  = "Equal"
	effectNoExec   = "NoExecute"
)

var (
	operators    = []string{operatorExists, operatorEqual}
	taintEffects = []string{"NoSchedule", "PreferNoSchedule", effectNoExec}
	// relayResources are the resources the relay's requests and limits
	// may name.
	relayResources = []string{"cpu", "memory", "ephemeral-storage"}
)

// relayDefaultRequests and relayDefaultLimits are the relay container's
// resources where Relay.Requests or Relay.Limits is nil (kpf's relay pods
// get them through Resources): a request written in the file is
// compared with the default limit, and a limit with the default request.
var (
	relayDefaultRequests = map[string]string{"cpu": "10m", "memory": "16Mi"}
	relayDefaultLimits   = map[string]string{"cpu": "500m", "memory": "64Mi"}
)

// Resources returns the relay container's requests and limits: r's,
// each list replacing the built-in default one when set.
func (r Relay) Resources() (requests, limits map[string]string) {
	requests, limits = r.Requests, r.Limits
	if requests == nil {
		requests = maps.Clone(relayDefaultRequests)
	}
	if limits == nil {
		limits = maps.Clone(relayDefaultLimits)
	}
	return requests, limits
}

// clone returns r with its own maps and slice, so that a forward's
// settings share nothing with the defaults block's.
func (r Relay) clone() Relay {
	r.NodeSelector = maps.Clone(r.NodeSelector)
	r.Tolerations = slices.Clone(r.Tolerations)
	r.Requests = maps.Clone(r.Requests)
	r.Limits = maps.Clone(r.Limits)
	return r
}

// relay decodes a relay mapping over r, which holds the inherited
// settings: each field written replaces the inherited one as a whole
// (nodeSelector and tolerations entirely), except that resources.requests
// and resources.limits are replaced each on its own.
func (d *decoder) relay(path string, raw *yaml.Node, r *Relay) {
	n := d.value(path, raw)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return
	}
	fs := d.fields(path, n, kindRelay)
	for _, s := range []struct {
		field string
		dst   *string
	}{{fImage, &r.Image}, {fNamespace, &r.Namespace}} {
		if f, ok := fs[s.field]; ok {
			if v, ok := d.str(join(path, s.field), f.val); ok {
				*s.dst = v
			}
		}
	}
	if f, ok := fs[fNodeSelector]; ok {
		r.NodeSelector = d.nodeSelector(join(path, fNodeSelector), f.val)
	}
	if f, ok := fs[fTolerations]; ok {
		r.Tolerations = d.tolerations(join(path, fTolerations), f.val)
	}
	if f, ok := fs[fResources]; ok {
		d.resources(join(path, fResources), f.val, r)
	}
}

const nodeLabelHint = `a node label is a name such as kubernetes.io/os or example.com/pool: an optional DNS prefix and "/", then at most 63 letters, digits, '-', '_' and '.'`

// nodeSelector decodes a mapping of node labels to values. A key that is
// not a label name is reported at the key and left out.
func (d *decoder) nodeSelector(path string, raw *yaml.Node) map[string]string {
	out, _ := d.stringMap(path, raw, "a mapping of node labels to values", "a node label",
		func(k *yaml.Node, p string) bool {
			if errs := validation.IsQualifiedName(k.Value); len(errs) > 0 {
				d.report(k, p, fmt.Sprintf("invalid node label %q: %s", k.Value, reason(errs)), nodeLabelHint)
				return false
			}
			return true
		},
		func(p, _ string, v *yaml.Node) (string, bool) { return d.labelValue(p, v) })
	return out
}

// stringMap decodes a mapping of names to strings: key checks each name
// (reporting what is wrong) and value decodes each value; a name that is
// not a scalar, or repeats one, is reported at the key. Entries that fail
// are left out. It returns the mapping's node too, nil when it is not a
// mapping (which it reports as not being want; what names a key).
func (d *decoder) stringMap(path string, raw *yaml.Node, want, what string,
	key func(k *yaml.Node, p string) bool, value func(p, key string, v *yaml.Node) (string, bool)) (map[string]string, *yaml.Node) {
	n := d.value(path, raw)
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, want)
		return nil, nil
	}
	out := map[string]string{}
	first := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.deref(n.Content[i])
		if k == nil {
			return out, n
		}
		if k.Kind != yaml.ScalarNode {
			d.report(k, path, "expected "+what+", got "+describe(k), "")
			continue
		}
		p := join(path, k.Value)
		if !key(k, p) {
			continue
		}
		if f, dup := first[k.Value]; dup {
			d.report(k, p, fmt.Sprintf("duplicate key %q", k.Value), "first at "+d.at(f).String())
			continue
		}
		first[k.Value] = k
		if s, ok := value(p, k.Value, n.Content[i+1]); ok {
			out[k.Value] = s
		}
	}
	return out, n
}

// labelValue decodes a string that Kubernetes reads as a label value. A
// boolean or a number is an error, as it is for kubectl, with a hint to
// quote it.
func (d *decoder) labelValue(path string, raw *yaml.Node) (string, bool) {
	n := d.value(path, raw)
	if n == nil {
		return "", false
	}
	if n.Kind == yaml.ScalarNode && slices.Contains([]string{"!!bool", "!!int", "!!float"}, n.ShortTag()) {
		d.bad[path] = true
		d.report(n, path, "expected a string, got "+describe(n), fmt.Sprintf("quote it: %q", n.Value))
		return "", false
	}
	return d.str(path, raw)
}

// tolerations decodes a list of tolerations. An item that is not a
// mapping is kept as a zero placeholder marked bad, so indexes stay
// aligned with paths.
func (d *decoder) tolerations(path string, raw *yaml.Node) []Toleration {
	items, ok := d.list(path, raw)
	if !ok {
		return nil
	}
	out := make([]Toleration, len(items))
	for j, item := range items {
		out[j] = d.toleration(fmt.Sprintf("%s[%d]", path, j), item)
	}
	return out
}

// toleration decodes one toleration. Operator defaults to Equal, as in
// Kubernetes.
func (d *decoder) toleration(path string, raw *yaml.Node) Toleration {
	t := Toleration{Operator: operatorEqual}
	n := d.value(path, raw)
	if n == nil {
		return t
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return t
	}
	fs := d.fields(path, n, kindToleration)
	for _, s := range []struct {
		field string
		dst   *string
	}{{fKey, &t.Key}, {fOperator, &t.Operator}, {fEffect, &t.Effect}} {
		if f, ok := fs[s.field]; ok {
			if v, ok := d.str(join(path, s.field), f.val); ok {
				*s.dst = v
			}
		}
	}
	if f, ok := fs[fValue]; ok {
		t.Value, _ = d.labelValue(join(path, fValue), f.val)
	}
	if f, ok := fs[fTolerationSeconds]; ok {
		if v, ok := d.integer(join(path, fTolerationSeconds), f.val); ok {
			t.Seconds = &v
		}
	}
	return t
}

// resources decodes the relay's resources into r: requests and limits
// each replace the inherited list when written.
func (d *decoder) resources(path string, raw *yaml.Node, r *Relay) {
	n := d.value(path, raw)
	if n == nil {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.typeError(n, path, "a mapping")
		return
	}
	fs := d.fields(path, n, kindResources)
	if f, ok := fs[fRequests]; ok {
		r.Requests = d.quantities(join(path, fRequests), f.val)
	}
	if f, ok := fs[fLimits]; ok {
		r.Limits = d.quantities(join(path, fLimits), f.val)
	}
}

// quantities decodes a mapping of resource names to quantities, each
// kept in its canonical form ("0.5" becomes "500m"). A name that is not
// one of relayResources is reported at the key and left out, as is a
// quantity that does not parse.
func (d *decoder) quantities(path string, raw *yaml.Node) map[string]string {
	out, n := d.stringMap(path, raw, "a mapping of resource names to quantities", "a resource name",
		func(k *yaml.Node, p string) bool {
			if !slices.Contains(relayResources, k.Value) {
				d.report(k, p, fmt.Sprintf("unknown resource %q", k.Value), resourceHint(k.Value))
				return false
			}
			return true
		},
		d.quantity)
	if n != nil && len(out) == 0 && len(n.Content) > 0 {
		d.bad[path] = true // not empty: its entries were reported
	}
	return out
}

// resourceHint is the hint for an unknown resource name.
func resourceHint(name string) string {
	if s := suggest.Closest(name, relayResources); s != "" {
		return fmt.Sprintf("did you mean %q?", s)
	}
	return "the relay's resources are cpu, memory and ephemeral-storage"
}

// quantity decodes the quantity of resource name, written as a string or a
// number, into its canonical string.
func (d *decoder) quantity(path, name string, raw *yaml.Node) (string, bool) {
	n := d.value(path, raw)
	if n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode || !slices.Contains([]string{"!!str", "!!int", "!!float"}, n.ShortTag()) {
		d.typeError(n, path, "a quantity such as 500m or 64Mi")
		return "", false
	}
	q, err := resource.ParseQuantity(n.Value)
	if err != nil {
		d.reportAt(path, fmt.Sprintf("invalid quantity %q", n.Value), quantityHint(name, n.Value))
		return "", false
	}
	return q.String(), true
}

// quantityHint says how to write a quantity of resource name, or what s
// was likely meant to be ("64mi", "64MB": "64Mi").
func quantityHint(name, s string) string {
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	if unit := s[len(num):]; num != "" && unit != "" {
		u := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(unit[:1])+unit[1:], "B"), "b")
		u = strings.TrimSuffix(u, "i") + "i"
		if _, err := resource.ParseQuantity(num + u); err == nil {
			return fmt.Sprintf("did you mean %q?", num+u)
		}
	}
	if name == "cpu" {
		return `write cores, as in "0.5", or millicores, as in "500m"`
	}
	return `write bytes with a unit, as in "64Mi" or "1Gi"`
}

// relay checks relay settings at prefix (defaults.relay or
// forwards[i].relay). Like common it checks only the values written under
// prefix, except that each request is compared with its limit wherever
// either was set (here, in defaults or by kpf).
func (v *validator) relay(prefix string, r Relay) {
	// "" is kpf's default for both image and namespace: only one written
	// in the file can be wrong.
	if p := join(prefix, fImage); v.given(p, r.Image != "") && !v.bad[p] {
		switch {
		case r.Image == "":
			v.errorf(p, "leave image out to use the relay image of this kpf's version", "image must not be empty")
		case strings.ContainsFunc(r.Image, unicode.IsSpace):
			v.errorf(p, "write REGISTRY/REPOSITORY:TAG, optionally with @sha256:DIGEST", "invalid image %q: an image reference has no spaces", r.Image)
		}
	}
	if p := join(prefix, fNamespace); v.given(p, r.Namespace != "") && !v.bad[p] {
		if errs := validation.IsDNS1123Label(r.Namespace); len(errs) > 0 {
			v.errorf(p, "", "invalid namespace %q: %s", r.Namespace, reason(errs))
		}
	}
	if p := join(prefix, fNodeSelector); v.check(p) {
		for _, k := range slices.Sorted(maps.Keys(r.NodeSelector)) {
			kp := join(p, k)
			if v.bad[kp] {
				continue
			}
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				v.errorf(kp, nodeLabelHint, "invalid node label %q: %s", k, reason(errs))
			} else if errs := validation.IsValidLabelValue(r.NodeSelector[k]); len(errs) > 0 {
				v.errorf(kp, "", "invalid value %q of node label %s: %s", r.NodeSelector[k], k, reason(errs))
			}
		}
	}
	if p := join(prefix, fTolerations); v.check(p) {
		for j, t := range r.Tolerations {
			if tp := fmt.Sprintf("%s[%d]", p, j); !v.bad[tp] {
				v.toleration(tp, t)
			}
		}
	}
	v.resources(join(prefix, fResources), r)
}

// toleration checks one toleration as Kubernetes would.
func (v *validator) toleration(path string, t Toleration) {
	kp, op, vp, ep, sp := join(path, fKey), join(path, fOperator), join(path, fValue), join(path, fEffect), join(path, fTolerationSeconds)
	operator := cmp.Or(t.Operator, operatorEqual)
	opOK := !v.bad[op]
	if opOK && !slices.Contains(operators, operator) {
		hint := "use Exists or Equal"
		if s := suggest.Closest(operator, operators); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		v.errorf(op, hint, "unknown toleration operator %q", t.Operator)
		opOK = false
	}
	if !v.bad[kp] {
		switch {
		case t.Key == "" && opOK && operator != operatorExists:
			at := path
			if v.written(kp) {
				at = kp
			}
			v.errorf(at, "set key, or operator: Exists to tolerate every taint",
				"a toleration without a key must have operator: Exists")
		case t.Key != "":
			if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
				v.errorf(kp, "", "invalid toleration key %q: %s", t.Key, reason(errs))
			}
		}
	}
	if !v.bad[vp] && t.Value != "" {
		if opOK && operator == operatorExists {
			v.errorf(vp, "remove value, or use operator: Equal to match it", "a toleration with operator Exists has no value")
		} else if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
			v.errorf(vp, "", "invalid toleration value %q: %s", t.Value, reason(errs))
		}
	}
	effectOK := !v.bad[ep]
	if effectOK && t.Effect != "" && !slices.Contains(taintEffects, t.Effect) {
		hint := "use NoSchedule, PreferNoSchedule or NoExecute, or leave effect out to match every effect"
		if s := suggest.Closest(t.Effect, taintEffects); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		v.errorf(ep, hint, "unknown taint effect %q", t.Effect)
		effectOK = false
	}
	if t.Seconds != nil && !v.bad[sp] {
		switch {
		case *t.Seconds < 0:
			v.errorf(sp, "use 0 to leave the node at once when the taint appears", "tolerationSeconds %d is negative", *t.Seconds)
		case effectOK && t.Effect != effectNoExec:
			v.errorf(sp, "set effect: NoExecute, or remove tolerationSeconds",
				"tolerationSeconds applies only to effect NoExecute: it is how long the pod stays on a node after such a taint appears")
		}
	}
}

// resources checks the requests and limits at prefix, and that no
// request is greater than its limit.
func (v *validator) resources(prefix string, r Relay) {
	for _, l := range []struct {
		field     string
		list, def map[string]string
		what      string // request or limit
	}{{fRequests, r.Requests, relayDefaultRequests, "request"}, {fLimits, r.Limits, relayDefaultLimits, "limit"}} {
		lp := join(prefix, l.field)
		if !v.check(lp) || l.list == nil {
			continue
		}
		if len(l.list) == 0 {
			v.errorf(lp, fmt.Sprintf("leave %s out to use kpf's defaults (%s)", l.field, describeResources(l.def)),
				"%s must not be empty", l.field)
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(l.list)) {
			np := join(lp, name)
			if v.bad[np] {
				continue
			}
			if !slices.Contains(relayResources, name) {
				v.errorf(np, resourceHint(name), "unknown resource %q", name)
				continue
			}
			q, err := resource.ParseQuantity(l.list[name])
			switch {
			case err != nil:
				v.errorf(np, quantityHint(name, l.list[name]), "invalid quantity %q", l.list[name])
			case q.Sign() <= 0:
				v.errorf(np, fmt.Sprintf("leave %s out of %s for none", name, l.field), "%s %s must be positive, got %s", name, l.what, l.list[name])
			}
		}
	}

	// A request and its limit may come from different levels: report a
	// clash at the one written here.
	requests, limits := r.Requests, r.Limits
	if r.Requests == nil {
		requests = relayDefaultRequests
	}
	if r.Limits == nil {
		limits = relayDefaultLimits
	}
	for _, name := range slices.Sorted(maps.Keys(requests)) {
		lim, ok := limits[name]
		if !ok {
			continue
		}
		rq, err1 := resource.ParseQuantity(requests[name])
		lq, err2 := resource.ParseQuantity(lim)
		if err1 != nil || err2 != nil || rq.Cmp(lq) <= 0 {
			continue
		}
		rp, lp := join(prefix, fRequests+"."+name), join(prefix, fLimits+"."+name)
		const hint = "a container's request cannot exceed its limit: lower the request or raise the limit"
		switch {
		case v.check(rp) && !v.bad[lp]:
			v.errorf(rp, hint, "%s request %s is greater than its limit %s%s", name, requests[name], lim, v.origin(lp, r.Limits))
		case v.check(lp) && !v.bad[rp]:
			v.errorf(lp, hint, "%s limit %s is less than its request %s%s", name, lim, requests[name], v.origin(rp, r.Requests))
		}
	}
}

// origin says where a request or limit at path not written there comes
// from: kpf's defaults (list is nil) or the defaults block.
func (v *validator) origin(path string, list map[string]string) string {
	switch {
	case v.written(path):
		return ""
	case list == nil:
		return " (kpf's default)"
	default:
		return " (from defaults.relay)"
	}
}

// describeResources writes a list of resources as "cpu 10m, memory 16Mi".
func describeResources(list map[string]string) string {
	var parts []string
	for _, name := range slices.Sorted(maps.Keys(list)) {
		parts = append(parts, name+" "+list[name])
	}
	return strings.Join(parts, ", ")
}
