package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is
// a sound config.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "config", "*", "*.yaml"))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, warns, err := Parse("fuzz.yaml", data)
		if err != nil {
			if cfg != nil || warns != nil {
				t.Fatal("Parse returned a config or warnings with an error")
			}
			return
		}
		if cfg.Version != 1 {
			t.Fatalf("accepted version %d", cfg.Version)
		}
		for _, d := range cfg.Validate() {
			if d.Severity == SeverityError {
				t.Fatalf("accepted config does not re-validate: %v", d)
			}
		}
		if p := cfg.Proxy; p != nil {
			if p.SOCKS5 == "" && p.HTTP == "" || p.SOCKS5 == p.HTTP {
				t.Fatalf("bad proxy addresses %+v", p)
			}
			for _, a := range []string{p.SOCKS5, p.HTTP} {
				if ap, err := netip.ParseAddrPort(a); a != "" && (err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 || ap.String() != a) {
					t.Fatalf("proxy address %q is not a normalized loopback address", a)
				}
			}
			for _, ns := range p.Namespaces {
				if len(validation.IsDNS1123Label(ns)) > 0 {
					t.Fatalf("bad proxy namespace %q", ns)
				}
			}
			if !p.Equal(p) {
				t.Fatal("proxy not equal to itself")
			}
		}
		checkRelay(t, cfg.Defaults.Relay)
		names := map[string]bool{}
		for _, fw := range cfg.Forwards {
			if names[fw.Name] || !namePattern.MatchString(fw.Name) {
				t.Fatalf("bad or repeated name %q", fw.Name)
			}
			names[fw.Name] = true
			if fw.Target.Kind < Service || fw.Target.Kind > Host || len(fw.Ports) == 0 || fw.Namespace == "" {
				t.Fatalf("incomplete forward %+v", fw)
			}
			if msg, _ := checkHost(fw.Target.Name); fw.Target.Kind == Host && msg != "" {
				t.Fatalf("accepted host %q: %s", fw.Target.Name, msg)
			}
			for _, p := range fw.Ports {
				if (p.Local == 0) != p.Auto || (p.Remote.Number == 0) == (p.Remote.Name == "") {
					t.Fatalf("bad port %+v", p)
				}
				if fw.Target.Kind == Host && p.Remote.Name != "" {
					t.Fatalf("host forward with a port name: %+v", fw)
				}
				if p.Protocol == UDP && fw.Target.Kind != Host && fw.Target.Kind != Service || p.Protocol > UDP {
					t.Fatalf("bad protocol in forward %+v", fw)
				}
			}
			// Health checks probe a TCP port; without one, none.
			tcp := func(p PortMapping) bool { return p.Protocol == TCP }
			probed := func(p PortMapping) bool { return p.Protocol == TCP && p.Remote == fw.Health.Port }
			if slices.ContainsFunc(fw.Ports, tcp) != slices.ContainsFunc(fw.Ports, probed) ||
				!slices.ContainsFunc(fw.Ports, tcp) && fw.Health.Port != (Port{}) {
				t.Fatalf("bad health port %s in forward %+v", fw.Health.Port, fw)
			}
			h := fw.Health
			if h.Interval < MinHealthInterval || h.Interval > MaxHealthInterval || h.Timeout <= 0 || h.Timeout >= h.Interval ||
				h.Threshold < 1 || h.Threshold > MaxHealthThreshold || (h.HTTPPath != "" && !validHTTPPath(h.HTTPPath)) {
				t.Fatalf("bad health %+v in forward %+v", h, fw)
			}
			if !fw.Equal(fw) {
				t.Fatal("forward not equal to itself")
			}
			checkRelay(t, fw.Relay)
		}
	})
}

// checkRelay fails t unless r holds settings the relay pod can take:
// quantities in canonical form, no empty resource list, tolerations with
// an operator.
func checkRelay(t *testing.T, r Relay) {
	t.Helper()
	if !r.Equal(r.clone()) || strings.ContainsFunc(r.Image, unicode.IsSpace) {
		t.Fatalf("bad relay %+v", r)
	}
	for _, list := range []map[string]string{r.Requests, r.Limits} {
		if list != nil && len(list) == 0 {
			t.Fatalf("empty resource list in %+v", r)
		}
		for name, v := range list {
			q, err := resource.ParseQuantity(v)
			if err != nil || q.String() != v || q.Sign() <= 0 || !slices.Contains(relayResources, name) {
				t.Fatalf("bad quantity %s %q in %+v", name, v, r)
			}
		}
	}
	for _, tol := range r.Tolerations {
		if !slices.Contains(operators, tol.Operator) || tol.Seconds != nil && tol.Effect != effectNoExec {
			t.Fatalf("bad toleration %+v", tol)
		}
	}
}
