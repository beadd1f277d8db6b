package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kpf-dev/kpf/internal/suggest"
)

// namePattern is what forward and group names must match.
var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

const nameRule = "use lowercase letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 63 characters"

// Validate checks c and returns every problem found, errors and warnings,
// sorted by position. Parse and Load already call it; it is exported for
// configs built or changed in code.
func (c *Config) Validate() []Diagnostic {
	ds := validate(c, nil)
	sortDiagnostics(ds)
	return ds
}

// validator checks the semantics of a decoded config. bad marks the paths
// that failed to decode and were reported already.
type validator struct {
	c     *Config
	bad   map[string]bool
	diags []Diagnostic
}

func validate(c *Config, bad map[string]bool) []Diagnostic {
	v := &validator{c: c, bad: bad}
	v.run()
	return v.diags
}

// parent strips the last ".field" or "[index]" from path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// at returns the position of path, or of the closest enclosing value with
// a known position.
func (v *validator) at(path string) Position {
	for p := path; ; p = parent(p) {
		if pos, ok := v.c.pos[p]; ok {
			return pos
		}
		if strings.HasPrefix(p, fForwards+"[") && !strings.ContainsAny(p[len(fForwards)+1:], ".[") {
			i, err := strconv.Atoi(strings.TrimSuffix(p[len(fForwards)+1:], "]"))
			if err == nil && i < len(v.c.Forwards) && v.c.Forwards[i].Pos.Line > 0 {
				return v.c.Forwards[i].Pos
			}
		}
		if p == "" {
			return Position{File: v.c.File, Line: 1, Col: 1}
		}
	}
}

// written reports whether path was written in the file (always true for a
// config built in code, which has no positions).
func (v *validator) written(path string) bool {
	if v.c.pos == nil {
		return true
	}
	_, ok := v.c.pos[path]
	return ok
}

func (v *validator) add(sev Severity, path, msg, hint string) {
	v.diags = append(v.diags, Diagnostic{Pos: v.at(path), Path: path, Message: msg, Hint: hint, Severity: sev})
}

func (v *validator) errorf(path, hint, format string, args ...any) {
	v.add(SeverityError, path, fmt.Sprintf(format, args...), hint)
}

func (v *validator) warnf(path, hint, format string, args ...any) {
	v.add(SeverityWarning, path, fmt.Sprintf(format, args...), hint)
}

// given reports whether the value at path was written in the file; in a
// config built in code, which has no positions, it returns set, which
// tells whether the value is set.
func (v *validator) given(path string, set bool) bool {
	if v.c.pos == nil {
		return set
	}
	_, ok := v.c.pos[path]
	return ok
}

// check reports whether path should be checked: it was written and did not
// fail to decode.
func (v *validator) check(path string) bool {
	return v.written(path) && !v.bad[path]
}

func (v *validator) run() {
	c := v.c
	switch {
	case v.bad[fVersion]:
	case c.Version == 0 && !(c.pos != nil && v.written(fVersion)):
		v.errorf("", "add `version: 1` at the top of the file", "version is required")
	case c.Version != 1:
		v.errorf(fVersion, "this kpf understands version 1", "unsupported version %d", c.Version)
	}
	if c.pos != nil {
		d := c.Defaults
		v.common(fDefaults, d.Namespace, d.Address, d.WaitForReady, d.Balance, d.Spare)
		v.health(join(fDefaults, fHealth), d.Health, nil)
		v.relay(join(fDefaults, fRelay), d.Relay)
	}
	if len(c.Forwards) == 0 {
		v.warnf(fForwards, "add forwards under `forwards:`", "no forwards")
	}

	names := map[string]int{}
	for i, f := range c.Forwards {
		path := fmt.Sprintf("%s[%d]", fForwards, i)
		if v.bad[path] {
			continue
		}
		v.forward(path, f)
		if prev, dup := names[f.Name]; dup && f.Name != "" {
			np := join(path, fName)
			if !v.written(np) {
				v.errorf(path, "set a unique `name` on one of them", "derived name %q collides with %s[%d] at %s",
					f.Name, fForwards, prev, v.at(fmt.Sprintf("%s[%d]", fForwards, prev)))
			} else {
				v.errorf(np, fmt.Sprintf("%s[%d] at %s already uses it", fForwards, prev, v.at(fmt.Sprintf("%s[%d].%s", fForwards, prev, fName))),
					"duplicate forward name %q", f.Name)
			}
		} else if _, dup := names[f.Name]; !dup {
			names[f.Name] = i
		}
	}
	for i, f := range c.Forwards {
		seen := map[string]bool{}
		for j, g := range f.Groups {
			gp := fmt.Sprintf("%s[%d].%s[%d]", fForwards, i, fGroups, j)
			switch {
			case !namePattern.MatchString(g):
				v.errorf(gp, nameRule, "invalid group name %q", g)
			case seen[g]:
				v.errorf(gp, "", "duplicate group %q", g)
			default:
				if k, clash := names[g]; clash {
					v.errorf(gp, "rename the group or the forward: `kpf up NAME` could not tell them apart",
						"group %q has the same name as %s[%d] at %s", g, fForwards, k, v.at(fmt.Sprintf("%s[%d]", fForwards, k)))
				}
			}
			seen[g] = true
		}
	}
	v.conflicts()
	if c.Proxy != nil {
		v.proxy(c.Proxy)
	}
}

// proxy checks the proxy block.
func (v *validator) proxy(p *Proxy) {
	if p.SOCKS5 == "" && p.HTTP == "" && !v.bad[join(fProxy, fSOCKS5)] && !v.bad[join(fProxy, fHTTP)] {
		v.errorf(fProxy, "set socks5: 127.0.0.1:1080, http: 127.0.0.1:3128, or both", "no proxy to run: neither socks5 nor http is set")
	}
	var addrs []netip.AddrPort // the valid addresses checked so far
	for _, a := range []struct{ field, addr string }{{fSOCKS5, p.SOCKS5}, {fHTTP, p.HTTP}} {
		path := join(fProxy, a.field)
		if a.addr == "" || !v.check(path) {
			continue
		}
		ap, err := parseListenAddr(a.addr)
		switch {
		case err != nil:
			v.errorf(path, "write a loopback address and a port, such as 127.0.0.1:1080", "%v", err)
		case !ap.Addr().IsLoopback():
			v.errorf(path, "use 127.0.0.1, ::1 or localhost; a proxy into the cluster is never opened to other machines",
				"address %s is not a loopback address: anyone who can reach it could use the proxy to reach the cluster", ap)
		case slices.Contains(addrs, ap):
			v.errorf(path, "give each proxy its own port", "socks5 and http both use %s", ap)
		default:
			addrs = append(addrs, ap)
			v.proxyClash(path, ap)
		}
	}
	for _, l := range []struct {
		field string
		items []string
	}{{fNamespaces, p.Namespaces}, {fContexts, p.Contexts}} {
		path := join(fProxy, l.field)
		if !v.check(path) {
			continue
		}
		if l.items != nil && len(l.items) == 0 { // nil: not set, in a config built in code
			v.errorf(path, fmt.Sprintf("leave %s out to use those of the enabled forwards", l.field), "%s must not be empty", l.field)
			continue
		}
		seen := map[string]bool{}
		for j, s := range l.items {
			ip := fmt.Sprintf("%s[%d]", path, j)
			if v.bad[ip] {
				continue
			}
			switch {
			case l.field == fNamespaces && len(validation.IsDNS1123Label(s)) > 0:
				v.errorf(ip, "", "invalid namespace %q: %s", s, reason(validation.IsDNS1123Label(s)))
			case l.field == fContexts && s == "" && v.written(ip):
				v.errorf(ip, "leave contexts out to use those of the enabled forwards (the current-context for a forward that names none)", "context must not be empty")
			case seen[s]:
				v.errorf(ip, "", "duplicate %s %q", strings.TrimSuffix(l.field, "s"), s)
			}
			seen[s] = true
		}
	}
	if len(p.Namespaces) == 0 && v.c.pos != nil && !v.written(join(fProxy, fNamespaces)) {
		v.warnf(fProxy, "add enabled forwards or list namespaces under proxy.namespaces", "the proxy reaches no namespace: there is no enabled forward to take them from")
	}
}

// proxyClash reports an enabled forward that binds the proxy address ap.
func (v *validator) proxyClash(path string, ap netip.AddrPort) {
	for i, f := range v.c.Forwards {
		fp := fmt.Sprintf("%s[%d]", fForwards, i)
		if !f.Enabled || v.bad[fp] {
			continue
		}
		i := slices.IndexFunc(f.LocalAddrs(), func(a netip.Addr) bool { return a == ap.Addr() || a.IsUnspecified() })
		if i < 0 {
			continue
		}
		for j, pm := range f.Ports {
			pp := fmt.Sprintf("%s.%s[%d]", fp, fPorts, j)
			if pm.Local != ap.Port() || pm.Protocol != TCP || v.bad[pp] {
				continue
			}
			v.errorf(path, fmt.Sprintf("%s (%s) binds %s at %s; pick another port for the proxy",
				fp, f.Name, localAddr(f.Address, pm.Local), v.at(pp)),
				"address %s is already in use", ap)
			return
		}
	}
}

// common checks the fields forwards and defaults share. Values that were
// not written under prefix (inherited or built in) are not checked again.
func (v *validator) common(prefix, ns, addr string, wait time.Duration, bal Balance, spare int) {
	if p := join(prefix, fNamespace); v.check(p) {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			v.errorf(p, "", "invalid namespace %q: %s", ns, reason(errs))
		}
	}
	if p := join(prefix, fAddress); v.check(p) {
		if localAddrs(addr) == nil {
			v.errorf(p, "", "invalid address %q: want an IP address or localhost", addr)
		}
	}
	if p := join(prefix, fWaitForReady); v.check(p) {
		switch {
		case wait <= 0:
			v.errorf(p, `use a positive duration such as "30s"`, "waitForReady must be positive, got %s", wait)
		case wait > MaxWaitForReady:
			v.errorf(p, "", "waitForReady %s is longer than the maximum %s", wait, MaxWaitForReady)
		}
	}
	if p := join(prefix, fBalance); v.check(p) && !bal.Valid() {
		hint := `use "first" or "round-robin"`
		if s := suggest.Closest(string(bal), []string{string(BalanceFirst), string(BalanceRoundRobin)}); s != "" {
			hint = fmt.Sprintf("did you mean %q?", s)
		}
		v.errorf(p, hint, "unknown balance %q", bal)
	}
	if p := join(prefix, fSpare); v.check(p) && (spare < 0 || spare > MaxSpare) {
		v.errorf(p, "0 keeps none; 1 or 2 cover a client that connects one connection at a time", "spare %d is out of range 0-%d", spare, MaxSpare)
	}
}

func (v *validator) forward(path string, f Forward) {
	v.common(path, f.Namespace, f.Address, f.WaitForReady, f.Balance, f.Spare)

	if np := join(path, fName); !v.bad[np] && !namePattern.MatchString(f.Name) {
		if v.written(np) {
			v.errorf(np, nameRule, "invalid name %q", f.Name)
		} else if f.Target.Kind != 0 {
			v.errorf(path, "set `name` explicitly", "derived name %q is not a valid forward name", f.Name)
		}
	}

	if !v.bad[join(path, "target")] {
		v.target(path, f.Target)
	}
	if sp := join(path, fSpare); f.Target.Kind == Host && v.check(sp) && f.Spare > 0 && f.Spare <= MaxSpare {
		v.warnf(sp, "remove it", "spare has no effect on a host target: its connections go through the relay")
	}
	rp := join(path, fRelay)
	switch f.Target.Kind {
	case Pod, Deployment, StatefulSet, Selector:
		if v.given(rp, !f.Relay.Equal(Relay{})) && !v.bad[rp] {
			v.warnf(rp, "remove it", "relay has no effect on a %s target: kpf reaches its pods without the relay", targetField(f.Target.Kind))
		}
	}
	v.relay(rp, f.Relay)

	if addrs := f.LocalAddrs(); addrs != nil {
		ap := join(path, fAddress)
		loopback := !slices.ContainsFunc(addrs, func(a netip.Addr) bool { return !a.IsLoopback() })
		switch {
		case !loopback && !f.AllowNonLoopback:
			from := ""
			if !v.written(ap) {
				from = " (from defaults)"
			}
			v.errorf(ap, "add `allowNonLoopback: true` to this forward if that is intended",
				"address %s%s is not a loopback address: other machines could reach the forwarded ports", f.Address, from)
		case loopback && f.AllowNonLoopback:
			v.warnf(join(path, fAllowNonLoopback), "remove it", "allowNonLoopback has no effect on loopback address %s", f.Address)
		}
	}

	pp := join(path, fPorts)
	if len(f.Ports) == 0 && !v.bad[pp] {
		v.errorf(path, `add for example ports: ["8080:80"]`, "no ports")
	}
	// A local port is bound once per protocol.
	type local struct {
		port  uint16
		proto Protocol
	}
	firstLocal := map[local]int{}
	for j, pm := range f.Ports {
		p := fmt.Sprintf("%s[%d]", pp, j)
		if v.bad[p] {
			continue
		}
		switch {
		case pm.Auto:
		case pm.Local == 0:
			v.errorf(p, `pick one in 1-65535, or write "auto:REMOTE" to let kpf pick a free one and keep it`, "local port 0 is not allowed")
		case pm.Local < 1024:
			v.warnf(p, "binding it needs root or CAP_NET_BIND_SERVICE; ports above 1023 do not",
				"local port %d is privileged", pm.Local)
		}
		if k, dup := firstLocal[local{pm.Local, pm.Protocol}]; dup && pm.Local != 0 {
			v.errorf(p, fmt.Sprintf("%s[%d] at %s already uses it", pp, k, v.at(fmt.Sprintf("%s[%d]", pp, k))),
				"duplicate local port %s", withProtocol(strconv.Itoa(int(pm.Local)), pm.Protocol))
		} else if !dup {
			firstLocal[local{pm.Local, pm.Protocol}] = j
		}
		switch k := f.Target.Kind; {
		case pm.Protocol > UDP:
			v.errorf(p, "use TCP or UDP", "unknown protocol %d", pm.Protocol)
		case pm.Protocol == UDP && k != Service && k != Host && k != 0:
			v.errorf(p, "forward the pod's service instead: service: NAME, with this port as a service port",
				"udp is not supported for a %s target: port-forward carries TCP only, and kpf's relay, which carries UDP, reaches services and hosts", targetField(k))
		}
		r := pm.Remote
		switch {
		case r.Name != "" && r.Number != 0:
			v.errorf(p, "", "remote port has both a number and a name")
		case r.Name != "" && f.Target.Kind == Host:
			v.errorf(p, "write the port's number", "remote port %q is a name: a host has no port names", r.Name)
		case r.Name != "":
			if errs := validation.IsValidPortName(r.Name); len(errs) > 0 {
				v.errorf(p, "a port name is at most 15 lowercase letters, digits and '-', with at least one letter",
					"invalid remote port name %q", r.Name)
			}
		case r.Number == 0 && (pm.Local != 0 || pm.Auto):
			v.errorf(p, "", "remote port 0 is not allowed")
		}
	}
	v.health(join(path, fHealth), f.Health, f.Ports)
}

// health checks the health check at prefix; ports are the forward's port
// mappings, nil for the defaults block (which has no port). Like common it
// checks only the values written under prefix.
func (v *validator) health(prefix string, h Health, ports []PortMapping) {
	hp := join(prefix, fHTTP)
	if v.check(hp) && h.HTTPPath != "" && !validHTTPPath(h.HTTPPath) {
		v.errorf(hp, `write an absolute path such as "/healthz", without spaces`, "invalid http path %q", h.HTTPPath)
	}

	ip, tp := join(prefix, fInterval), join(prefix, fTimeout)
	intervalOK := true
	if v.check(ip) {
		switch {
		case h.Interval < MinHealthInterval:
			v.errorf(ip, "", "health interval %s is shorter than the minimum %s", h.Interval, MinHealthInterval)
			intervalOK = false
		case h.Interval > MaxHealthInterval:
			v.errorf(ip, "", "health interval %s is longer than the maximum %s", h.Interval, MaxHealthInterval)
			intervalOK = false
		}
	}
	timeoutOK := true
	if v.check(tp) && h.Timeout <= 0 {
		v.errorf(tp, `use a positive duration such as "5s"`, "health timeout must be positive, got %s", h.Timeout)
		timeoutOK = false
	}
	// The timeout and interval may come from different levels; report a
	// clash at the one written here, once.
	if intervalOK && timeoutOK && !v.bad[ip] && !v.bad[tp] && h.Timeout >= h.Interval {
		msg, hint := "health timeout %s must be shorter than the interval %s", "a probe has to finish before the next one is due"
		switch {
		case v.written(tp):
			v.errorf(tp, hint, msg, h.Timeout, h.Interval)
		case v.written(ip):
			v.errorf(ip, hint, msg, h.Timeout, h.Interval)
		}
	}

	if p := join(prefix, fThreshold); v.check(p) && (h.Threshold < 1 || h.Threshold > MaxHealthThreshold) {
		v.errorf(p, "", "health threshold %d is out of range 1-%d", h.Threshold, MaxHealthThreshold)
	}

	pp := join(prefix, fPort)
	if len(ports) == 0 {
		return
	}
	var remotes []string // of the TCP mappings
	udp := false         // h.Port is the remote of a UDP mapping
	for j, pm := range ports {
		if v.bad[fmt.Sprintf("%s[%d]", join(parent(prefix), fPorts), j)] {
			return // the port may be the one that failed to decode
		}
		if pm.Protocol != TCP {
			udp = udp || pm.Remote == h.Port
			continue
		}
		if r := pm.Remote.String(); !slices.Contains(remotes, r) {
			remotes = append(remotes, r)
		}
	}
	if len(remotes) == 0 {
		// Only UDP: nothing to probe. A health check written here (in
		// a config built in code: a port to probe) is a mistake.
		if v.given(prefix, h.Port != Port{}) {
			v.errorf(prefix, "remove health: kpf does not probe a forward without TCP ports",
				"health checks probe TCP; this forward has only UDP ports")
		}
		return
	}
	if !v.check(pp) || slices.ContainsFunc(ports, func(pm PortMapping) bool { return pm.Protocol == TCP && pm.Remote == h.Port }) {
		return
	}
	hint := "use the REMOTE of one of the forward's ports: " + strings.Join(remotes, ", ")
	if udp {
		v.errorf(pp, "use the REMOTE of one of the forward's TCP ports: "+strings.Join(remotes, ", "),
			"health port %s is a udp port: health checks probe TCP", h.Port)
		return
	}
	v.errorf(pp, hint, "health port %s is not a remote port of this forward", h.Port)
}

// validHTTPPath reports whether p can be sent as the path of a GET request:
// absolute, without spaces or control characters.
func validHTTPPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	u, err := url.ParseRequestURI(p)
	return err == nil && u.Host == ""
}

// targetField returns the field that names a target of kind k.
func targetField(k TargetKind) string {
	for _, tf := range targetFields {
		if tf.kind == k {
			return tf.field
		}
	}
	return ""
}

func (v *validator) target(path string, t Target) {
	field := targetField(t.Kind)
	p := join(path, field)
	switch t.Kind {
	case 0:
		for _, tf := range targetFields {
			if v.bad[join(path, tf.field)] {
				return // written under a misspelt name, reported as such
			}
		}
		v.errorf(path, "set exactly one of "+targetList, "missing target")
	case Service:
		if errs := validation.IsDNS1035Label(t.Name); len(errs) > 0 {
			v.errorf(p, "", "invalid service name %q: %s", t.Name, reason(errs))
		}
	case Pod, Deployment, StatefulSet:
		if errs := validation.IsDNS1123Subdomain(t.Name); len(errs) > 0 {
			v.errorf(p, "", "invalid %s name %q: %s", field, t.Name, reason(errs))
		}
	case Host:
		if msg, hint := checkHost(t.Name); msg != "" {
			v.errorf(p, hint, "%s", msg)
		} else if a, err := netip.ParseAddr(t.Name); t.Name == Localhost || err == nil && a.IsLoopback() {
			v.warnf(p, "name the host as the cluster sees it, such as a service's DNS name or a machine's address",
				"host %s is the loopback address of the relay pod itself", t.Name)
		}
	case Selector:
		sel, err := labels.Parse(t.Selector)
		switch {
		case err != nil:
			v.errorf(p, "use kubectl selector syntax such as app=web,tier!=cache", "invalid selector %q: %v", t.Selector, err)
		case sel.Empty():
			v.errorf(p, "a selector picks pods by label, for example app=web", "empty selector")
		}
	default:
		v.errorf(path, "", "unknown target kind %d", t.Kind)
	}
}

// hostHint says what a host target is.
const hostHint = "write a DNS name such as db.example.com or an IP address, as seen from inside the cluster"

// checkHost checks a host target: an IP address, or a DNS name (a DNS-1123
// subdomain, which is what a name inside a cluster is). It returns the
// message and hint of the problem, or "" for a valid host.
func checkHost(h string) (msg, hint string) {
	if h == "" {
		return "host must not be empty", hostHint
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Zone() != "" {
			return fmt.Sprintf("invalid host %q: an IPv6 zone names an interface of this machine, not one in the cluster", h),
				"remove the zone (%" + a.Zone() + ")"
		}
		return "", ""
	}
	if hp, port, err := net.SplitHostPort(h); err == nil && port != "" && allDigits(port) {
		if m, _ := checkHost(hp); m == "" {
			return fmt.Sprintf("invalid host %q: the port does not go in the host", h),
				fmt.Sprintf(`write host: %s, and the port in ports, e.g. ["%s:%s"]`, hp, port, port)
		}
	}
	switch {
	case strings.Contains(h, "/"):
		return fmt.Sprintf("invalid host %q: a host is a name or an address, not a URL or a path", h),
			"write the host name only, e.g. db.example.com, and its port in ports"
	case strings.Contains(h, ":"):
		return fmt.Sprintf("invalid host %q: not an IPv6 address", h), hostHint
	case strings.Trim(h, "0123456789.") == "":
		return fmt.Sprintf("invalid host %q: not an IPv4 address", h), "an IPv4 address is four numbers 0-255, such as 10.0.0.5"
	}
	if errs := validation.IsDNS1123Subdomain(h); len(errs) > 0 {
		if lower := strings.ToLower(h); len(validation.IsDNS1123Subdomain(lower)) == 0 {
			return fmt.Sprintf("invalid host %q: DNS names in a cluster are lowercase", h), fmt.Sprintf("write %s", lower)
		}
		return fmt.Sprintf("invalid host %q: %s", h, reason(errs)), hostHint
	}
	return "", ""
}

// conflicts reports enabled forwards that bind the same local address and
// port. An unspecified address (0.0.0.0 or ::) conflicts with every address
// on the same port.
func (v *validator) conflicts() {
	type bind struct {
		addr netip.Addr
		fwd  int
		port int
	}
	// A TCP port and a UDP port of the same number do not conflict.
	type local struct {
		port  uint16
		proto Protocol
	}
	byPort := map[local][]bind{}
	for i, f := range v.c.Forwards {
		if !f.Enabled || v.bad[fmt.Sprintf("%s[%d]", fForwards, i)] {
			continue
		}
		addrs := f.LocalAddrs()
		for j, pm := range f.Ports {
			p := fmt.Sprintf("%s[%d].%s[%d]", fForwards, i, fPorts, j)
			if pm.Local == 0 || v.bad[p] {
				continue
			}
		check:
			for _, b := range byPort[local{pm.Local, pm.Protocol}] {
				if b.fwd == i {
					continue
				}
				for _, addr := range addrs {
					if !(b.addr == addr || b.addr.IsUnspecified() || addr.IsUnspecified()) {
						continue
					}
					other := v.c.Forwards[b.fwd]
					v.errorf(p, fmt.Sprintf("%s[%d] (%s) binds %s at %s; pick another local port",
						fForwards, b.fwd, other.Name, withProtocol(localAddr(other.Address, pm.Local), pm.Protocol),
						v.at(fmt.Sprintf("%s[%d].%s[%d]", fForwards, b.fwd, fPorts, b.port))),
						"local address %s is already in use", withProtocol(localAddr(f.Address, pm.Local), pm.Protocol))
					break check
				}
			}
			key := local{pm.Local, pm.Protocol}
			for _, addr := range addrs {
				byPort[key] = append(byPort[key], bind{addr: addr, fwd: i, port: j})
			}
		}
	}
}

// withProtocol adds "/udp" to a port or address of a UDP mapping, as
// PortMapping.String does.
func withProtocol(s string, p Protocol) string {
	if p == UDP {
		return s + "/udp"
	}
	return s
}

// localAddr writes a forward's local address and port as kpf shows it:
// localhost:8080, 127.0.0.1:8080 or [::1]:8080.
func localAddr(address string, port uint16) string {
	return net.JoinHostPort(address, strconv.Itoa(int(port)))
}

// reason shortens the first of apimachinery's validation messages to the
// rule, without its examples and regular expression.
func reason(errs []string) string {
	s, _, _ := strings.Cut(errs[0], " (e.g.")
	return s
}
