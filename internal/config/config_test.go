package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, _, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatalf("parse:\n%v", err)
	}
	return cfg
}

func TestParseResolves(t *testing.T) {
	cfg := mustParse(t, `version: 1
defaults:
  context: dev
  namespace: apps
  waitForReady: 5s
  balance: round-robin
  spare: 1
forwards:
  - service: web
    ports: ["8080", "8443:https", 9000, {local: 15432, remote: postgres}, {local: 15433, remote: "5433"}]
  - selector: "tier!=cache, app=web"
    context: prod
    namespace: other
    address: localhost
    balance: first
    waitForReady: 1m
    spare: 0
    enabled: false
    groups: [g]
    ports: ["18080:http"]
  - name: v6
    pod: web-0
    address: "::1"
    ports: [8081]
`)
	web, sel, v6 := cfg.Forwards[0], cfg.Forwards[1], cfg.Forwards[2]
	want := Forward{
		Name: "web", Context: "dev", Namespace: "apps",
		Target: Target{Kind: Service, Name: "web"},
		Ports: []PortMapping{
			{Local: 8080, Remote: Port{Number: 8080}}, {Local: 8443, Remote: Port{Name: "https"}}, {Local: 9000, Remote: Port{Number: 9000}},
			{Local: 15432, Remote: Port{Name: "postgres"}}, {Local: 15433, Remote: Port{Number: 5433}},
		},
		Address: "localhost", Enabled: true, Balance: BalanceRoundRobin, WaitForReady: 5 * time.Second, Spare: 1,
		Health: Health{Port: Port{Number: 8080}, Interval: 10 * time.Second, Timeout: 5 * time.Second, Threshold: 3},
	}
	if !web.Equal(want) || !web.Enabled || web.Pos != (Position{"f.yaml", 9, 5}) {
		t.Errorf("got %+v\nwant %+v", web, want)
	}
	if sel.Name != "app-web-tier-cache" || sel.Target.String() != "selector/app=web,tier!=cache" ||
		sel.Context != "prod" || sel.Namespace != "other" || sel.Address != "localhost" ||
		sel.Balance != BalanceFirst || sel.WaitForReady != time.Minute || sel.Spare != 0 || sel.Enabled {
		t.Errorf("selector forward: %+v", sel)
	}
	if v6.Address != "::1" || v6.Target.String() != "pod/web-0" || v6.Context != "dev" {
		t.Errorf("v6 forward: %+v", v6)
	}
	if p, ok := cfg.Position("forwards[1].context"); !ok || p.Line != 12 {
		t.Errorf("Position(forwards[1].context) = %v, %v", p, ok)
	}
	if _, ok := cfg.Position("forwards[0].context"); ok {
		t.Error("Position reports an inherited value as written")
	}
}

func TestParseBuiltinDefaults(t *testing.T) {
	f := mustParse(t, "version: 1\nforwards: [{deployment: api, ports: [8080]}]\n").Forwards[0]
	if f.Context != "" || f.Namespace != DefaultNamespace || f.Address != DefaultAddress ||
		f.WaitForReady != DefaultWaitForReady || f.Balance != DefaultBalance || !f.Enabled || f.Name != "api" {
		t.Errorf("got %+v", f)
	}
}

func TestParseHealth(t *testing.T) {
	cfg := mustParse(t, `version: 1
defaults:
  health: {http: /ready, interval: 20s, threshold: 5}
forwards:
  - service: plain
    ports: ["8080:http"]
  - service: tcp
    ports: ["8081:http", "8082:9000"]
    health: {tcp: true, port: "9000"}
  - service: timeout
    ports: [8083]
    health: {timeout: 1s}
  - service: own
    ports: [{local: 8084, remote: web}, "8085:admin"]
    health: {http: /healthz, port: admin, interval: 5s, timeout: 2s, threshold: 2}
`)
	s := time.Second
	want := []Health{
		{HTTPPath: "/ready", Port: Port{Name: "http"}, Interval: 20 * s, Timeout: 5 * s, Threshold: 5},
		{Port: Port{Number: 9000}, Interval: 20 * s, Timeout: 5 * s, Threshold: 5},
		{HTTPPath: "/ready", Port: Port{Number: 8083}, Interval: 20 * s, Timeout: s, Threshold: 5},
		{HTTPPath: "/healthz", Port: Port{Name: "admin"}, Interval: 5 * s, Timeout: 2 * s, Threshold: 2},
	}
	for i, f := range cfg.Forwards {
		if f.Health != want[i] {
			t.Errorf("%s: got %+v, want %+v", f.Name, f.Health, want[i])
		}
	}
	if d := cfg.Defaults.Health; d != (Health{HTTPPath: "/ready", Interval: 20 * s, Timeout: 5 * s, Threshold: 5}) {
		t.Errorf("defaults: got %+v", d)
	}
	if p, ok := cfg.Position("forwards[3].health.port"); !ok || p.Line != 15 {
		t.Errorf("Position(forwards[3].health.port) = %v, %v", p, ok)
	}
}

func TestParseHealthErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // diagnostics, in order, as printed
	}{
		{
			"both kinds",
			"version: 1\nforwards:\n  - service: web\n    ports: [8080]\n    health: {tcp: true, http: /healthz}\n",
			[]string{"f.yaml:5:14: forwards[0].health.tcp: tcp and http are mutually exclusive\n\thint: remove `tcp: true` to probe with an HTTP GET, or remove http to probe with TCP"},
		},
		{
			"no kind",
			"version: 1\ndefaults:\n  health: {tcp: false}\nforwards: []\n",
			[]string{
				"f.yaml:3:12: defaults.health.tcp: tcp: false leaves no health check\n\thint: remove health to use the default TCP check, or set http: /PATH",
				"f.yaml:4:11: warning: forwards: no forwards\n\thint: add forwards under `forwards:`",
			},
		},
		{
			"relative and empty http",
			"version: 1\nforwards:\n  - {service: a, ports: [8080], health: {http: healthz}}\n  - {service: b, ports: [8081], health: {http: ''}}\n",
			[]string{
				"f.yaml:3:48: forwards[0].health.http: invalid http path \"healthz\"\n\thint: write an absolute path such as \"/healthz\", without spaces",
				"f.yaml:4:48: forwards[1].health.http: http must not be empty\n\thint: write the path to GET, such as \"/healthz\"",
			},
		},
		{
			"timeout not shorter than an inherited interval",
			"version: 1\ndefaults:\n  health: {interval: 2s, timeout: 1s}\nforwards:\n  - {service: a, ports: [8080], health: {timeout: 2s}}\n",
			[]string{"f.yaml:5:51: forwards[0].health.timeout: health timeout 2s must be shorter than the interval 2s\n\thint: a probe has to finish before the next one is due"},
		},
		{
			"interval shorter than the built-in timeout",
			"version: 1\nforwards:\n  - {service: a, ports: [8080], health: {interval: 3s}}\n",
			[]string{"f.yaml:3:52: forwards[0].health.interval: health timeout 5s must be shorter than the interval 3s\n\thint: a probe has to finish before the next one is due"},
		},
		{
			"ranges",
			"version: 1\nforwards:\n  - {service: a, ports: [8080], health: {interval: 11m, timeout: 0s, threshold: 101}}\n",
			[]string{
				"f.yaml:3:52: forwards[0].health.interval: health interval 11m0s is longer than the maximum 10m0s",
				"f.yaml:3:66: forwards[0].health.timeout: health timeout must be positive, got 0s\n\thint: use a positive duration such as \"5s\"",
				"f.yaml:3:81: forwards[0].health.threshold: health threshold 101 is out of range 1-100",
			},
		},
		{
			"unknown port",
			"version: 1\nforwards:\n  - {service: a, ports: [8080, \"8081:http\"], health: {port: 9090}}\n",
			[]string{"f.yaml:3:61: forwards[0].health.port: health port 9090 is not a remote port of this forward\n\thint: use the REMOTE of one of the forward's ports: 8080, http"},
		},
		{
			"port in defaults",
			"version: 1\ndefaults:\n  health: {port: http}\nforwards: []\n",
			[]string{
				"f.yaml:3:12: defaults.health.port: unknown field \"port\"\n\thint: the probed port is per forward: set health.port on the forwards that need it",
				"f.yaml:4:11: warning: forwards: no forwards\n\thint: add forwards under `forwards:`",
			},
		},
		{
			"wrong types",
			"version: 1\nforwards:\n  - {service: a, ports: [8080], health: {tcp: yes, threshold: '3', port: [1]}}\n",
			[]string{
				"f.yaml:3:47: forwards[0].health.tcp: expected true or false, got a string",
				"f.yaml:3:63: forwards[0].health.threshold: expected an integer, got a string",
				"f.yaml:3:74: forwards[0].health.port: expected a port number or name, got a list",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(tt.src))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got error %v, want *Error", err)
			}
			if got, want := cerr.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestParseMergeKeys(t *testing.T) {
	cfg := mustParse(t, `version: 1
x-base: &base
  namespace: base
  context: base
x-more: &more
  namespace: more
  balance: round-robin
forwards:
  - <<: [*base, *more]
    context: own
    service: web
    ports: [8080]
`)
	f := cfg.Forwards[0]
	if f.Context != "own" || f.Namespace != "base" || f.Balance != BalanceRoundRobin {
		t.Errorf("written keys must win over merged ones, earlier merges over later: %+v", f)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // diagnostics, in order, as printed
	}{
		{
			"wrong type",
			"version: 1\nforwards:\n  - service: web\n    ports: 8080\n",
			[]string{"f.yaml:4:12: forwards[0].ports: expected a list, got an integer"},
		},
		{
			"unknown field hint",
			"version: 1\nforwards:\n  - service: web\n    namspace: x\n    ports: [1080]\n",
			[]string{"f.yaml:4:5: forwards[0].namspace: unknown field \"namspace\"\n\thint: did you mean \"namespace\"?"},
		},
		{
			"duplicate key in defaults",
			"version: 1\ndefaults:\n  namespace: a\n  namespace: b\nforwards: []\n",
			[]string{
				"f.yaml:4:3: defaults.namespace: duplicate key \"namespace\"\n\thint: first at f.yaml:3:3",
				"f.yaml:5:11: warning: forwards: no forwards\n\thint: add forwards under `forwards:`",
			},
		},
		{
			"long-form port without local (a fuzzer's find: it panicked)",
			"version: 1\nforwards:\n  - service: web\n    ports: [{0}]\n",
			[]string{
				"f.yaml:4:13: forwards[0].ports[0]: missing local port\n\thint: write {local: N, remote: N or name}",
				"f.yaml:4:13: forwards[0].ports[0]: missing remote port\n\thint: write {local: N, remote: N or name}",
				"f.yaml:4:14: forwards[0].ports[0]: expected a field name, got an integer",
			},
		},
		{
			"env template with an unknown field",
			"version: 1\nforwards:\n  - service: db\n    ports: [5432]\n    env:\n      DATABASE_URL: \"postgres://{{.Hots}}:{{.Port}}/app\"\n",
			[]string{"f.yaml:6:21: forwards[0].env.DATABASE_URL: unknown field .Hots (the fields are .Name, .Host, .Port, .Addr and .Ports)"},
		},
		{
			"env names",
			"version: 1\nforwards:\n  - service: db\n    ports: [5432]\n    env: {2X: a, KPF_DB_PORT: b, OK: \"{{.Addr}}\"}\n",
			[]string{
				"f.yaml:5:11: forwards[0].env.2X: invalid variable name \"2X\"\n\thint: use letters, digits and _, not starting with a digit",
				"f.yaml:5:18: forwards[0].env.KPF_DB_PORT: variable KPF_DB_PORT takes the KPF_ prefix of kpf's own variables\n\thint: name it without KPF_",
			},
		},
		{
			"merge of a scalar",
			"version: 1\nforwards:\n  - <<: 3\n    service: web\n    ports: [1080]\n",
			[]string{"f.yaml:3:9: forwards[0]: expected a mapping or a list of mappings to merge, got an integer"},
		},
		{
			"two documents",
			"version: 1\n---\nversion: 1\n",
			[]string{"f.yaml:2:1: more than one YAML document\n\thint: keep everything in one document (remove the `---` line)"},
		},
		{
			"ipv6 wildcard conflicts with ipv4",
			"version: 1\nforwards:\n  - {name: a, service: a, address: '::', allowNonLoopback: true, ports: [1080]}\n" +
				"  - {name: b, service: b, address: 127.0.0.2, ports: [1080]}\n",
			[]string{"f.yaml:4:55: forwards[1].ports[0]: local address 127.0.0.2:1080 is already in use\n\thint: forwards[0] (a) binds [::]:1080 at f.yaml:3:74; pick another local port"},
		},
		{
			"localhost conflicts with ::1",
			"version: 1\nforwards:\n  - {name: a, service: a, address: '::1', ports: [1080]}\n  - {name: b, service: b, ports: [1080]}\n",
			[]string{"f.yaml:4:35: forwards[1].ports[0]: local address localhost:1080 is already in use\n\thint: forwards[0] (a) binds [::1]:1080 at f.yaml:3:51; pick another local port"},
		},
		{
			"allowNonLoopback on localhost is a warning",
			"version: 1\nforwards:\n  - {name: a, service: a, address: localhost, allowNonLoopback: true, ports: [1080]}\n  - {name: b, service: b, ports: [1080], enabled: false}\n  - {name: c, service: c, ports: [1080], enabled: nope}\n",
			[]string{
				"f.yaml:3:65: warning: forwards[0].allowNonLoopback: allowNonLoopback has no effect on loopback address localhost\n\thint: remove it",
				"f.yaml:5:35: forwards[2].ports[0]: local address localhost:1080 is already in use\n\thint: forwards[0] (a) binds localhost:1080 at f.yaml:3:79; pick another local port",
				"f.yaml:5:51: forwards[2].enabled: expected true or false, got a string",
			},
		},
		{
			"disabled forwards do not conflict, badly disabled ones do",
			"version: 1\nforwards:\n  - {name: a, service: a, ports: [1080]}\n  - {name: b, service: b, ports: [1080], enabled: false}\n  - {name: c, service: c, ports: [1080], enabled: nope}\n",
			[]string{
				"f.yaml:5:35: forwards[2].ports[0]: local address localhost:1080 is already in use\n\thint: forwards[0] (a) binds localhost:1080 at f.yaml:3:35; pick another local port",
				"f.yaml:5:51: forwards[2].enabled: expected true or false, got a string",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse("f.yaml", []byte(tt.src))
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got error %v, want *Error", err)
			}
			if got, want := cerr.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestAliasBomb checks that a billion-laughs document is rejected by the
// visit budget rather than expanded.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\nx-a: &a {namespace: x}\n")
	prev := "a"
	for i := range 9 {
		name := string(rune('b' + i))
		b.WriteString("x-" + name + ": &" + name + " {<<: [")
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]}\n")
		prev = name
	}
	b.WriteString("forwards:\n  - <<: *" + prev + "\n    service: web\n    ports: [8080]\n")
	_, _, err := Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "document too complex") {
		t.Fatalf("got %v, want a too-complex error", err)
	}
}

func TestSelect(t *testing.T) {
	cfg := mustParse(t, `version: 1
forwards:
  - {name: a, service: a, ports: [1001], groups: [obs]}
  - {name: b, service: b, ports: [1002], groups: [obs, db]}
  - {name: c, service: c, ports: [1003], enabled: false, groups: [db]}
  - {name: d, service: d, ports: [1004]}
`)
	tests := []struct {
		names   []string
		want    string
		wantErr string
	}{
		{nil, "a,b,d", ""},
		{[]string{"obs"}, "a,b", ""},
		{[]string{"d", "obs", "a"}, "a,b,d", ""},
		{[]string{"db"}, "b", ""},
		{[]string{"c"}, "", `select "c": only disabled forwards match`},
		{[]string{"a", "x", "y"}, "", `select "x", "y": no such forward or group`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.names, ","), func(t *testing.T) {
			fs, err := cfg.Select(tt.names...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrNoMatch) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				return
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.Name)
			}
			if err != nil || strings.Join(got, ",") != tt.want {
				t.Errorf("got %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestForwardEqual(t *testing.T) {
	base := Forward{Name: "a", Target: Target{Kind: Service, Name: "a"}, Ports: []PortMapping{{Local: 1080, Remote: Port{Number: 80}}},
		Address: "127.0.0.1", Enabled: true, Balance: BalanceFirst, WaitForReady: time.Second}
	same := base
	same.Pos, same.Groups, same.Enabled = Position{Line: 9}, []string{"g"}, false
	if !base.Equal(same) {
		t.Error("Pos, Groups and Enabled must not matter")
	}
	for name, change := range map[string]func(*Forward){
		"context": func(f *Forward) { f.Context = "x" },
		"target":  func(f *Forward) { f.Target.Kind = Deployment },
		"ports":   func(f *Forward) { f.Ports = []PortMapping{{Local: 1080, Remote: Port{Name: "http"}}} },
		"address": func(f *Forward) { f.Address = "::1" },
		"balance": func(f *Forward) { f.Balance = BalanceRoundRobin },
		"wait":    func(f *Forward) { f.WaitForReady = time.Minute },
		"spare":   func(f *Forward) { f.Spare = 2 },
		"health":  func(f *Forward) { f.Health.HTTPPath = "/healthz" },
		"protocol": func(f *Forward) {
			f.Ports = []PortMapping{{Local: 1080, Remote: Port{Number: 80}, Protocol: UDP}}
		},
		"host":               func(f *Forward) { f.Target = Target{Kind: Host, Name: "a"} },
		"relay image":        func(f *Forward) { f.Relay.Image = "relay:v2" },
		"relay namespace":    func(f *Forward) { f.Relay.Namespace = "relays" },
		"relay nodeSelector": func(f *Forward) { f.Relay.NodeSelector = map[string]string{"pool": "a"} },
		"relay tolerations":  func(f *Forward) { f.Relay.Tolerations = []Toleration{{Operator: "Exists"}} },
		"relay toleration seconds": func(f *Forward) {
			f.Relay.Tolerations = []Toleration{{Key: "a", Operator: "Exists", Effect: "NoExecute", Seconds: new(int64(0))}}
		},
		"relay requests": func(f *Forward) { f.Relay.Requests = map[string]string{"cpu": "1"} },
		"relay limits":   func(f *Forward) { f.Relay.Limits = map[string]string{"cpu": "1"} },
	} {
		other := base
		change(&other)
		if base.Equal(other) {
			t.Errorf("a change of %s must matter", name)
		}
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[string]string{
		Target{Kind: Service, Name: "thanos-query"}.String():                                              "svc/thanos-query",
		Target{Kind: Deployment, Name: "web"}.String():                                                    "deploy/web",
		Target{Kind: StatefulSet, Name: "db"}.String():                                                    "sts/db",
		Target{Kind: Pod, Name: "x"}.String():                                                             "pod/x",
		Target{Kind: Selector, Selector: "app=web"}.String():                                              "selector/app=web",
		Port{Number: 80}.String():                                                                         "80",
		Port{Name: "http"}.String():                                                                       "http",
		PortMapping{Local: 8080, Remote: Port{Name: "http"}}.String():                                     "8080:http",
		PortMapping{Local: 5353, Remote: Port{Number: 53}, Protocol: UDP}.String():                        "5353:53/udp",
		PortMapping{Auto: true, Remote: Port{Number: 53}, Protocol: UDP}.String():                         "auto:53/udp",
		PortMapping{Local: 5353, Remote: Port{Number: 53}, Protocol: TCP}.String():                        "5353:53",
		Target{Kind: Host, Name: "db.example.com"}.String():                                               "host/db.example.com",
		Diagnostic{Pos: Position{"f", 1, 2}, Path: "p", Message: "m", Severity: SeverityWarning}.String(): "f:1:2: warning: p: m",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestFind(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Find(sub); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Find(sub); err != nil || got != filepath.Join(dir, FileName) {
		t.Errorf("Find(abs) = %q, %v", got, err)
	}
	t.Chdir(sub)
	if got, err := Find("."); err != nil || got != "../../"+FileName {
		t.Errorf("Find(.) = %q, %v", got, err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	if err := os.WriteFile(path, []byte("version: 1\n"+strings.Repeat("#", MaxFileSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	want := path + ":1:1: file is larger than the limit of 1048576 bytes (1 MiB); kpf did not parse it"
	if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v, want %q", err, want)
	}
}

// localhost binds both loopback addresses, as kubectl port-forward does;
// an IP binds only itself; 127.0.0.1 and ::1 on one port do not conflict.
func TestLocalAddrs(t *testing.T) {
	for addr, want := range map[string]string{
		"localhost": "[127.0.0.1 ::1]",
		"127.0.0.1": "[127.0.0.1]",
		"::1":       "[::1]",
		"0.0.0.0":   "[0.0.0.0]",
		"web":       "[]",
	} {
		if got := fmt.Sprint(Forward{Address: addr}.LocalAddrs()); got != want {
			t.Errorf("LocalAddrs of %q = %s, want %s", addr, got, want)
		}
	}
	cfg, _, err := Parse("f.yaml", []byte("version: 1\nforwards:\n  - {name: a, service: a, address: 127.0.0.1, ports: [1080]}\n  - {name: b, service: b, address: '::1', ports: [1080]}\n"))
	if err != nil {
		t.Fatalf("127.0.0.1 and ::1 on one port: %v", err)
	}
	if cfg.Forwards[0].Address != "127.0.0.1" || cfg.Forwards[1].Address != "::1" {
		t.Errorf("addresses %q, %q", cfg.Forwards[0].Address, cfg.Forwards[1].Address)
	}
}

// A directory given as the file is named once, with what to do.
func TestLoadDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "adir.yaml")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	_, _, err := Load(dir)
	want := fmt.Sprintf("load config: %s is a directory, not a forwards.yaml (name the file, e.g. %s)", dir, filepath.Join(dir, "forwards.yaml"))
	if err == nil || err.Error() != want {
		t.Errorf("Load(directory) = %v\nwant %s", err, want)
	}
}
