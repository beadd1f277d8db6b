package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseProxy(t *testing.T) {
	tests := []struct {
		name, src            string
		socks5, http         string
		namespaces, contexts []string
	}{
		{
			"written",
			"version: 1\nforwards: []\nproxy:\n  socks5: localhost:1080\n  http: '[::1]:3128'\n  namespaces: [monitoring, default]\n  contexts: [dev, prod]\n",
			"127.0.0.1:1080", "[::1]:3128", []string{"monitoring", "default"}, []string{"dev", "prod"},
		},
		{
			"defaults from the enabled forwards",
			`version: 1
defaults: {context: dev, namespace: apps}
forwards:
  - {service: a, ports: [1001]}
  - {service: b, ports: [1002], namespace: monitoring, context: prod}
  - {service: c, ports: [1003], namespace: off, context: other, enabled: false}
  - {service: d, ports: [1004], namespace: monitoring}
proxy: {http: 127.0.0.2:3128}
`,
			"", "127.0.0.2:3128", []string{"apps", "monitoring"}, []string{"dev", "prod"},
		},
		{
			"current-context",
			"version: 1\nforwards: [{service: a, ports: [1001]}]\nproxy: {socks5: 127.0.0.1:1080}\n",
			"127.0.0.1:1080", "", []string{"default"}, []string{""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustParse(t, tt.src).Proxy
			if p == nil {
				t.Fatal("no proxy")
			}
			if p.SOCKS5 != tt.socks5 || p.HTTP != tt.http || !slices.Equal(p.Namespaces, tt.namespaces) || !slices.Equal(p.Contexts, tt.contexts) {
				t.Errorf("got %+v", p)
			}
			if p.Pos.Line == 0 {
				t.Error("no position")
			}
		})
	}
	if p := mustParse(t, minimalSrc).Proxy; p != nil {
		t.Errorf("proxy %+v without a proxy block", p)
	}
}

const minimalSrc = "version: 1\nforwards: [{service: a, ports: [11001]}]\n"

func TestParseProxyErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{
			// The cause only: socks5 is written, under a misspelt name.
			"unknown field",
			minimalSrc + "proxy:\n  socks: 127.0.0.1:1080\n",
			[]string{
				"f.yaml:4:3: proxy.socks: unknown field \"socks\"\n\thint: did you mean \"socks5\"?",
			},
		},
		{
			"not a mapping",
			minimalSrc + "proxy: 127.0.0.1:1080\n",
			[]string{"f.yaml:3:8: proxy: expected a mapping, got a string"},
		},
		{
			"bad addresses",
			minimalSrc + "proxy:\n  socks5: 1080\n  http: 'web:3128'\n",
			[]string{
				"f.yaml:4:11: proxy.socks5: expected a string, got an integer",
				"f.yaml:5:9: proxy.http: invalid address \"web:3128\": want an IP address or localhost before the port\n\thint: write a loopback address and a port, such as 127.0.0.1:1080",
			},
		},
		{
			"port range",
			minimalSrc + "proxy:\n  socks5: 127.0.0.1:0\n  http: 127.0.0.1:65536\n",
			[]string{
				"f.yaml:4:11: proxy.socks5: invalid address \"127.0.0.1:0\": port \"0\" is not in range 1-65535\n\thint: write a loopback address and a port, such as 127.0.0.1:1080",
				"f.yaml:5:9: proxy.http: invalid address \"127.0.0.1:65536\": port \"65536\" is not in range 1-65535\n\thint: write a loopback address and a port, such as 127.0.0.1:1080",
			},
		},
		{
			"same address",
			minimalSrc + "proxy:\n  socks5: localhost:1080\n  http: 127.0.0.1:1080\n",
			[]string{"f.yaml:5:9: proxy.http: socks5 and http both use 127.0.0.1:1080\n\thint: give each proxy its own port"},
		},
		{
			"non-loopback ipv6",
			minimalSrc + "proxy:\n  socks5: '[::]:1080'\n",
			[]string{"f.yaml:4:11: proxy.socks5: address [::]:1080 is not a loopback address: anyone who can reach it could use the proxy to reach the cluster\n\thint: use 127.0.0.1, ::1 or localhost; a proxy into the cluster is never opened to other machines"},
		},
		{
			"disabled forwards do not clash",
			"version: 1\nforwards:\n  - {service: a, ports: [1080], enabled: false}\n  - {service: b, ports: [1081], address: '::1'}\nproxy: {socks5: '127.0.0.1:1080', http: '127.0.0.1:1081', namespaces: []}\n",
			[]string{"f.yaml:5:71: proxy.namespaces: namespaces must not be empty\n\thint: leave namespaces out to use those of the enabled forwards"},
		},
		{
			"lists",
			minimalSrc + "proxy:\n  socks5: 127.0.0.1:1080\n  namespaces: [a, [b], a]\n  contexts: [dev, '', dev]\n",
			[]string{
				"f.yaml:5:19: proxy.namespaces[1]: expected a string, got a list",
				"f.yaml:5:24: proxy.namespaces[2]: duplicate namespace \"a\"",
				"f.yaml:6:19: proxy.contexts[1]: context must not be empty\n\thint: leave contexts out to use those of the enabled forwards (the current-context for a forward that names none)",
				"f.yaml:6:23: proxy.contexts[2]: duplicate context \"dev\"",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(tt.src))
			cerr, ok := errors.AsType[*Error](err)
			if !ok {
				t.Fatalf("got error %v, want *Error", err)
			}
			if got, want := cerr.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestProxyNoNamespaceWarning(t *testing.T) {
	_, warns, err := Parse("f.yaml", []byte("version: 1\nforwards: [{service: a, ports: [11001], enabled: false}]\nproxy: {socks5: 127.0.0.1:1080}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0].String(), "f.yaml:3:8: warning: proxy: the proxy reaches no namespace") {
		t.Errorf("got warnings %v", warns)
	}
}

func TestProxyValidateInCode(t *testing.T) {
	cfg := &Config{Version: 1, Forwards: []Forward{{
		Name: "a", Namespace: "default", Target: Target{Kind: Service, Name: "a"}, Address: "127.0.0.1", Enabled: true,
		Ports: []PortMapping{{Local: 1080, Remote: Port{Number: 80}}}, Balance: BalanceFirst, WaitForReady: DefaultWaitForReady, Health: defaultHealth,
	}}}
	cfg.Forwards[0].Health.Port = Port{Number: 80}
	cfg.Proxy = &Proxy{SOCKS5: "127.0.0.1:1080", HTTP: "10.0.0.1:3128", Namespaces: []string{"Bad"}}
	var got []string
	for _, d := range cfg.Validate() {
		got = append(got, d.Path+": "+d.Message)
	}
	want := []string{
		"proxy.socks5: address 127.0.0.1:1080 is already in use",
		"proxy.http: address 10.0.0.1:3128 is not a loopback address: anyone who can reach it could use the proxy to reach the cluster",
		`proxy.namespaces[0]: invalid namespace "Bad": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestProxyEqual(t *testing.T) {
	a := &Proxy{SOCKS5: "127.0.0.1:1080", Namespaces: []string{"a"}, Contexts: []string{""}, Pos: Position{Line: 1}}
	b := &Proxy{SOCKS5: "127.0.0.1:1080", Namespaces: []string{"a"}, Contexts: []string{""}, Pos: Position{Line: 9}}
	if !a.Equal(b) || !(*Proxy)(nil).Equal(nil) || a.Equal(nil) || (*Proxy)(nil).Equal(a) {
		t.Error("Equal must ignore Pos and handle nil")
	}
	b.Contexts = []string{"dev"}
	if a.Equal(b) {
		t.Error("a change of contexts must matter")
	}
}
