package svcdial

import (
	"errors"
	"testing"

	"github.com/kpf-dev/kpf/internal/config"
)

func TestParseAddress(t *testing.T) {
	tests := []struct {
		addr string
		want Target
		ok   bool
	}{
		{"thanos-query.monitoring:9090", Target{Service: "thanos-query", Namespace: "monitoring", Port: config.Port{Number: 9090}, Short: true}, true},
		{"thanos-query.monitoring.svc:9090", Target{Service: "thanos-query", Namespace: "monitoring", Port: config.Port{Number: 9090}}, true},
		{"thanos-query.monitoring.svc.cluster.local:http", Target{Domain: "cluster.local", Service: "thanos-query", Namespace: "monitoring", Port: config.Port{Name: "http"}}, true},
		{"Web.Shop.SVC.prod.example.:80", Target{Domain: "prod.example", Service: "web", Namespace: "shop", Port: config.Port{Number: 80}}, true},
		{"example.com:443", Target{}, false}, // two labels, but...
		{"www.example.com:443", Target{}, false},
		{"localhost:80", Target{}, false},
		{"10.0.0.1:80", Target{}, false},
		{"[::1]:80", Target{}, false},
		{"web.shop:0", Target{}, false},
		{"web.shop:70000", Target{}, false},
		{"web.shop:not_a_port_name", Target{}, false},
		{"web.shop", Target{}, false},
		{"-web.shop:80", Target{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, ok := ParseAddress(tt.addr)
			if tt.addr == "example.com:443" {
				// Two labels always parse as service.namespace; whether
				// such a namespace is allowed is the Dialer's decision.
				if !ok || got.Service != "example" || got.Namespace != "com" {
					t.Fatalf("ParseAddress(%q) = %+v, %v", tt.addr, got, ok)
				}
				return
			}
			if ok != tt.ok || (ok && got != tt.want) {
				t.Fatalf("ParseAddress(%q) = %+v, %v; want %+v, %v", tt.addr, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestRoute(t *testing.T) {
	d := NewWithClusters(nil, Options{DefaultContext: "dev", Domains: map[string]string{"prod.local": "prod"}, Namespaces: []string{"monitoring"}}, nil)
	open := NewWithClusters(nil, Options{}, nil)
	tests := []struct {
		d       *Dialer
		addr    string
		context string
		err     string // "" ok; "not" not a cluster name; "refused" refused
	}{
		{d, "thanos-query.monitoring:9090", "dev", ""},
		{d, "thanos-query.monitoring.svc.cluster.local:9090", "dev", ""},
		{d, "api.monitoring.svc.prod.local:80", "prod", ""},
		{d, "api.shop.svc:80", "", "refused"},                   // .svc form, namespace not listed
		{d, "example.com:443", "", "not"},                       // short form, namespace not listed
		{d, "api.monitoring.svc.other.local:80", "", "refused"}, // unmapped domain
		{d, "10.0.0.1:80", "", "not"},
		{open, "api.shop.svc:80", "", ""},
		{open, "api.shop:80", "", "not"}, // short forms need a listed namespace
	}
	for _, tt := range tests {
		_, kctx, err := tt.d.Route(tt.addr)
		switch tt.err {
		case "":
			if err != nil || kctx != tt.context {
				t.Errorf("Route(%q) = %q, %v; want %q", tt.addr, kctx, err, tt.context)
			}
		case "not":
			if !errors.Is(err, errNotCluster) {
				t.Errorf("Route(%q) = %v; want not a cluster address", tt.addr, err)
			}
		case "refused":
			if !errors.Is(err, ErrRefused) || errors.Is(err, errNotCluster) {
				t.Errorf("Route(%q) = %v; want refused (and no fallback)", tt.addr, err)
			}
		}
	}
}
