package config

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// diagTest is a file and the diagnostics Parse reports for it, in order,
// as printed.
type diagTest struct {
	name, src string
	want      []string
}

// runDiagTests checks that Parse rejects each file with exactly the
// diagnostics listed, or, when every one listed is a warning, accepts it
// with those warnings.
func runDiagTests(t *testing.T, tests []diagTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warns, err := Parse("f.yaml", []byte(tt.src))
			var got []string
			if cfg != nil {
				for _, w := range warns {
					got = append(got, w.String())
				}
			} else {
				var cerr *Error
				if !errors.As(err, &cerr) {
					t.Fatalf("got error %v, want *Error", err)
				}
				for _, d := range cerr.Diagnostics {
					got = append(got, d.String())
				}
			}
			if g, w := strings.Join(got, "\n"), strings.Join(tt.want, "\n"); g != w {
				t.Errorf("got:\n%s\nwant:\n%s", g, w)
			}
		})
	}
}

func TestParseHost(t *testing.T) {
	cfg := mustParse(t, `version: 1
defaults:
  namespace: backend
  spare: 2
forwards:
  - name: db
    host: db.internal.example.com
    ports: ["15432:5432"]
  - host: cache.example.com.
    ports: [6379]
  - host: 10.20.0.5
    ports: ["18080:80"]
  - name: v6
    host: "fd00:0::0005"
    ports: ["18443:443"]
  - name: mapped
    host: "::ffff:10.1.2.3"
    ports: ["18444:443"]
`)
	want := []struct{ name, target string }{
		{"db", "host/db.internal.example.com"},
		{"cache.example.com", "host/cache.example.com"},
		{"10.20.0.5", "host/10.20.0.5"},
		{"v6", "host/fd00::5"},
		{"mapped", "host/10.1.2.3"},
	}
	for i, f := range cfg.Forwards {
		if f.Name != want[i].name || f.Target.String() != want[i].target || f.Target.Kind != Host {
			t.Errorf("forwards[%d]: name %q, target %s; want %q, %s", i, f.Name, f.Target, want[i].name, want[i].target)
		}
		// spare inherited from defaults is kept, without a warning: the
		// engine ignores it for hosts.
		if f.Spare != 2 || f.Namespace != "backend" {
			t.Errorf("forwards[%d]: spare %d, namespace %q", i, f.Spare, f.Namespace)
		}
	}
	if got := (Target{Kind: Host, Name: "db.example.com"}).String(); got != "host/db.example.com" {
		t.Errorf("Target.String() = %q", got)
	}
}

func TestParseHostErrors(t *testing.T) {
	runDiagTests(t, []diagTest{
		{
			"uppercase",
			"version: 1\nforwards:\n  - {name: db, host: DB.example.com, ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"DB.example.com\": DNS names in a cluster are lowercase\n\thint: write db.example.com"},
		},
		{
			"not a subdomain",
			"version: 1\nforwards:\n  - {name: db, host: db_1.example.com, ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"db_1.example.com\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character\n\thint: write a DNS name such as db.example.com or an IP address, as seen from inside the cluster"},
		},
		{
			"empty",
			"version: 1\nforwards:\n  - {name: db, host: '', ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: host must not be empty\n\thint: write a DNS name such as db.example.com or an IP address, as seen from inside the cluster"},
		},
		{
			"with a port",
			"version: 1\nforwards:\n  - {name: db, host: 'db.example.com:5432', ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"db.example.com:5432\": the port does not go in the host\n\thint: write host: db.example.com, and the port in ports, e.g. [\"5432:5432\"]"},
		},
		{
			"a URL",
			"version: 1\nforwards:\n  - {name: db, host: 'tcp://db.example.com', ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"tcp://db.example.com\": a host is a name or an address, not a URL or a path\n\thint: write the host name only, e.g. db.example.com, and its port in ports"},
		},
		{
			"bad IPv4",
			"version: 1\nforwards:\n  - {name: db, host: 10.0.0.256, ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"10.0.0.256\": not an IPv4 address\n\thint: an IPv4 address is four numbers 0-255, such as 10.0.0.5"},
		},
		{
			"bad IPv6",
			"version: 1\nforwards:\n  - {name: db, host: 'fd00:::1', ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"fd00:::1\": not an IPv6 address\n\thint: write a DNS name such as db.example.com or an IP address, as seen from inside the cluster"},
		},
		{
			"IPv6 zone",
			"version: 1\nforwards:\n  - {name: db, host: 'fe80::1%eth0', ports: [5432]}\n",
			[]string{"f.yaml:3:22: forwards[0].host: invalid host \"fe80::1%eth0\": an IPv6 zone names an interface of this machine, not one in the cluster\n\thint: remove the zone (%eth0)"},
		},
		{
			"derived from an IPv6 address",
			"version: 1\nforwards:\n  - {host: 'fd00::1', ports: [5432]}\n",
			[]string{"f.yaml:3:5: forwards[0]: derived name \"fd00::1\" is not a valid forward name\n\thint: set `name` explicitly"},
		},
		{
			"port names",
			"version: 1\nforwards:\n  - name: db\n    host: db.example.com\n    ports: [\"15432:postgres\", {local: 15433, remote: pg}, \"15434:5434\"]\n",
			[]string{
				"f.yaml:5:13: forwards[0].ports[0]: remote port \"postgres\" is a name: a host has no port names\n\thint: write the port's number",
				"f.yaml:5:31: forwards[0].ports[1]: remote port \"pg\" is a name: a host has no port names\n\thint: write the port's number",
			},
		},
		{
			"a second target",
			"version: 1\nforwards:\n  - {name: db, pod: db-0, host: db.example.com, ports: [5432]}\n",
			[]string{"f.yaml:3:27: forwards[0].host: more than one target: pod and host\n\thint: a forward has exactly one of service, pod, deployment, statefulset, selector or host"},
		},
		{
			"spare written on a host forward is a warning",
			"version: 1\nforwards:\n  - {name: db, host: db.example.com, spare: 1, ports: [5432]}\n  - {name: off, host: db.example.com, spare: 0, ports: [5433]}\n",
			[]string{"f.yaml:3:45: warning: forwards[0].spare: spare has no effect on a host target: its connections go through the relay\n\thint: remove it"},
		},
		{
			"spare out of range on a host forward is only an error",
			"version: 1\nforwards:\n  - {name: db, host: db.example.com, spare: 9, ports: [5432]}\n",
			[]string{"f.yaml:3:45: forwards[0].spare: spare 9 is out of range 0-8\n\thint: 0 keeps none; 1 or 2 cover a client that connects one connection at a time"},
		},
		{
			"loopback hosts are the relay pod itself",
			"version: 1\nforwards:\n  - {name: a, host: localhost, ports: [5432]}\n  - {name: b, host: 127.0.0.1, ports: [5433]}\n  - {name: c, host: '::1', ports: [5434]}\n",
			[]string{
				"f.yaml:3:21: warning: forwards[0].host: host localhost is the loopback address of the relay pod itself\n\thint: name the host as the cluster sees it, such as a service's DNS name or a machine's address",
				"f.yaml:4:21: warning: forwards[1].host: host 127.0.0.1 is the loopback address of the relay pod itself\n\thint: name the host as the cluster sees it, such as a service's DNS name or a machine's address",
				"f.yaml:5:21: warning: forwards[2].host: host ::1 is the loopback address of the relay pod itself\n\thint: name the host as the cluster sees it, such as a service's DNS name or a machine's address",
			},
		},
	})
}

func TestParseUDP(t *testing.T) {
	cfg := mustParse(t, `version: 1
forwards:
  - name: dns
    service: kube-dns
    ports: ["5353:53/udp", "5353:53/tcp", "53/udp", "auto:54/udp", 9153, {local: 5354, remote: dns, protocol: udp}, {local: 5355, remote: 55, protocol: tcp}]
  - name: syslog
    host: logs.example.com
    ports: ["5514:514/udp"]
  - name: mixed
    host: statsd.example.com
    ports: ["8125/udp", "8126:8126", "8127:8127"]
`)
	want := []PortMapping{
		{Local: 5353, Remote: Port{Number: 53}, Protocol: UDP},
		{Local: 5353, Remote: Port{Number: 53}},
		{Local: 53, Remote: Port{Number: 53}, Protocol: UDP},
		{Auto: true, Remote: Port{Number: 54}, Protocol: UDP},
		{Local: 9153, Remote: Port{Number: 9153}},
		{Local: 5354, Remote: Port{Name: "dns"}, Protocol: UDP},
		{Local: 5355, Remote: Port{Number: 55}},
	}
	dns, syslog, mixed := cfg.Forwards[0], cfg.Forwards[1], cfg.Forwards[2]
	if !slices.Equal(dns.Ports, want) {
		t.Errorf("ports:\ngot  %v\nwant %v", dns.Ports, want)
	}
	// Health checks probe the first TCP mapping; a UDP-only forward none.
	if dns.Health.Port != (Port{Number: 53}) || syslog.Health.Port != (Port{}) || mixed.Health.Port != (Port{Number: 8126}) {
		t.Errorf("health ports %v, %v, %v; want 53, none, 8126", dns.Health.Port, syslog.Health.Port, mixed.Health.Port)
	}
}

// PortMapping.String writes a mapping so that Parse reads it back the same.
func TestPortMappingStringRoundTrip(t *testing.T) {
	for in, want := range map[string]string{
		"5353:53/udp":  "5353:53/udp",
		"5353:53/tcp":  "5353:53",
		"53/udp":       "53:53/udp",
		"auto:53/udp":  "auto:53/udp",
		"5353:dns/udp": "5353:dns/udp",
		"8080:http":    "8080:http",
	} {
		cfg := mustParse(t, "version: 1\nforwards: [{service: dns, ports: ["+strconv.Quote(in)+"]}]\n")
		pm := cfg.Forwards[0].Ports[0]
		if got := pm.String(); got != want {
			t.Errorf("%q: String() = %q, want %q", in, got, want)
			continue
		}
		again := mustParse(t, "version: 1\nforwards: [{service: dns, ports: ["+strconv.Quote(pm.String())+"]}]\n").Forwards[0].Ports[0]
		if again != pm {
			t.Errorf("%q: %q parses back as %+v, want %+v", in, pm.String(), again, pm)
		}
	}
}

func TestParseUDPErrors(t *testing.T) {
	const udpHint = "forward the pod's service instead: service: NAME, with this port as a service port"
	runDiagTests(t, []diagTest{
		{
			"unknown protocols",
			"version: 1\nforwards:\n  - service: dns\n    ports: [\"5353/UDP\", \"5354:54/sctp\", \"5355/\", \"/udp\", {local: 5356, remote: 56, protocol: upd}, {local: 5357, remote: 57, protocol: 17}]\n",
			[]string{
				"f.yaml:4:13: forwards[0].ports[0]: invalid port \"5353/UDP\": unknown protocol \"UDP\"\n\thint: did you mean \"5353/udp\"?",
				"f.yaml:4:25: forwards[0].ports[1]: invalid port \"5354:54/sctp\": unknown protocol \"sctp\"\n\thint: kpf forwards tcp (the default) and udp: write \"5354:54/udp\" for UDP",
				"f.yaml:4:41: forwards[0].ports[2]: invalid port \"5355/\": unknown protocol \"\"\n\thint: kpf forwards tcp (the default) and udp: write \"5355/udp\" for UDP",
				"f.yaml:4:50: forwards[0].ports[3]: invalid port \"/udp\"\n\thint: write \"LOCAL:REMOTE\", \"PORT\" or a number, with /udp after it for UDP",
				"f.yaml:4:94: forwards[0].ports[4].protocol: unknown protocol \"upd\"\n\thint: did you mean \"udp\"?",
				"f.yaml:4:136: forwards[0].ports[5].protocol: expected a string, got an integer",
			},
		},
		{
			"udp to pods",
			"version: 1\nforwards:\n  - {pod: dns-0, ports: [\"5353/udp\"]}\n  - {name: d, deployment: dns, ports: [\"5354/udp\"]}\n" +
				"  - {name: s, statefulset: dns, ports: [\"5355/udp\"]}\n  - {selector: app=dns, ports: [{local: 5356, remote: 56, protocol: udp}]}\n",
			[]string{
				"f.yaml:3:26: forwards[0].ports[0]: udp is not supported for a pod target: port-forward carries TCP only, and kpf's relay, which carries UDP, reaches services and hosts\n\thint: " + udpHint,
				"f.yaml:4:40: forwards[1].ports[0]: udp is not supported for a deployment target: port-forward carries TCP only, and kpf's relay, which carries UDP, reaches services and hosts\n\thint: " + udpHint,
				"f.yaml:5:41: forwards[2].ports[0]: udp is not supported for a statefulset target: port-forward carries TCP only, and kpf's relay, which carries UDP, reaches services and hosts\n\thint: " + udpHint,
				"f.yaml:6:33: forwards[3].ports[0]: udp is not supported for a selector target: port-forward carries TCP only, and kpf's relay, which carries UDP, reaches services and hosts\n\thint: " + udpHint,
			},
		},
		{
			"one local port per protocol",
			"version: 1\nforwards:\n  - service: dns\n    ports: [\"5353:53/udp\", \"5353:53\", \"5353:54/udp\", \"5353:54/tcp\"]\n",
			[]string{
				"f.yaml:4:39: forwards[0].ports[2]: duplicate local port 5353/udp\n\thint: forwards[0].ports[0] at f.yaml:4:13 already uses it",
				"f.yaml:4:54: forwards[0].ports[3]: duplicate local port 5353\n\thint: forwards[0].ports[1] at f.yaml:4:28 already uses it",
			},
		},
		{
			"conflicts per protocol across forwards",
			"version: 1\nforwards:\n  - {name: a, service: a, ports: [\"5353/udp\"]}\n  - {name: b, service: b, ports: [5353]}\n  - {name: c, host: c.example.com, ports: [\"5353/udp\"]}\n",
			[]string{"f.yaml:5:44: forwards[2].ports[0]: local address localhost:5353/udp is already in use\n\thint: forwards[0] (a) binds localhost:5353/udp at f.yaml:3:35; pick another local port"},
		},
		{
			"a proxy does not clash with a udp port",
			"version: 1\nforwards:\n  - {name: a, service: a, ports: [\"1080/udp\"]}\nproxy: {socks5: 127.0.0.1:1080}\n",
			nil,
		},
		{
			"health port of a udp mapping",
			"version: 1\nforwards:\n  - {service: s, ports: [\"8125/udp\", \"8126:8126\", \"8127:8127\"], health: {port: 8125}}\n",
			[]string{"f.yaml:3:80: forwards[0].health.port: health port 8125 is a udp port: health checks probe TCP\n\thint: use the REMOTE of one of the forward's TCP ports: 8126, 8127"},
		},
		{
			"health port of both a udp and a tcp mapping",
			"version: 1\nforwards:\n  - {service: s, ports: [\"5353:53/udp\", \"5354:53\"], health: {port: 53}}\n",
			nil,
		},
		{
			"health on a udp-only forward",
			"version: 1\nforwards:\n  - {service: s, ports: [\"5353/udp\"], health: {http: /healthz, port: 5353}}\n",
			[]string{"f.yaml:3:47: forwards[0].health: health checks probe TCP; this forward has only UDP ports\n\thint: remove health: kpf does not probe a forward without TCP ports"},
		},
		{
			"inherited health on a udp-only forward",
			"version: 1\ndefaults:\n  health: {http: /healthz}\nforwards:\n  - {service: s, ports: [\"5353/udp\"]}\n",
			nil,
		},
	})
}

// A config built in code has no positions: a UDP-only forward without a
// health port is valid, one with a port is not.
func TestValidateUDPInCode(t *testing.T) {
	f := Forward{
		Name: "dns", Namespace: "default", Target: Target{Kind: Service, Name: "dns"}, Address: Localhost, Enabled: true,
		Balance: BalanceFirst, WaitForReady: time.Second, Ports: []PortMapping{{Local: 5353, Remote: Port{Number: 53}, Protocol: UDP}},
		Health: defaultHealth,
	}
	c := &Config{Version: 1, Forwards: []Forward{f}}
	if ds := c.Validate(); len(ds) != 0 {
		t.Errorf("UDP-only forward without a health port: %v", ds)
	}
	c.Forwards[0].Health.Port = Port{Number: 53}
	if ds := c.Validate(); len(ds) != 1 || !strings.Contains(ds[0].Message, "only UDP ports") {
		t.Errorf("UDP-only forward with a health port: %v", ds)
	}
	c.Forwards[0].Health.Port = Port{}
	c.Forwards[0].Ports[0].Protocol = 7
	if ds := c.Validate(); len(ds) != 1 || ds[0].Message != "unknown protocol 7" {
		t.Errorf("unknown protocol: %v", ds)
	}
}

func TestParseRelay(t *testing.T) {
	cfg := mustParse(t, `version: 1
defaults:
  namespace: backend
  relay:
    image: registry.example.com/kpf-relay:v1
    namespace: relays
    nodeSelector: {kubernetes.io/os: linux, pool: tools}
    tolerations:
      - {key: dedicated, value: tools, effect: NoSchedule}
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 30}
    resources:
      requests: {cpu: 0.01, memory: 16Mi}
      limits: {cpu: 1, memory: "0.0625Gi"}
forwards:
  - name: inherits
    host: a.example.com
    ports: [11001]
  - name: image
    host: b.example.com
    ports: [11002]
    relay: {image: other:v2}
  - name: placement
    service: c
    ports: ["1003/udp"]
    relay:
      nodeSelector: {pool: infra}
      tolerations: []
      resources: {limits: {memory: 128Mi}}
  - name: none
    host: d.example.com
    ports: [11004]
    relay: {nodeSelector: {}}
`)
	thirty := int64(30)
	base := Relay{
		Image:        "registry.example.com/kpf-relay:v1",
		Namespace:    "relays",
		NodeSelector: map[string]string{"kubernetes.io/os": "linux", "pool": "tools"},
		Tolerations: []Toleration{
			{Key: "dedicated", Operator: "Equal", Value: "tools", Effect: "NoSchedule"},
			{Key: "node.kubernetes.io/unreachable", Operator: "Exists", Effect: "NoExecute", Seconds: &thirty},
		},
		// Quantities are kept in canonical form.
		Requests: map[string]string{"cpu": "10m", "memory": "16Mi"},
		Limits:   map[string]string{"cpu": "1", "memory": "64Mi"},
	}
	if !cfg.Defaults.Relay.Equal(base) {
		t.Errorf("defaults.relay:\ngot  %+v\nwant %+v", cfg.Defaults.Relay, base)
	}
	image := base.clone()
	image.Image = "other:v2"
	placement := base.clone()
	placement.NodeSelector = map[string]string{"pool": "infra"}
	placement.Tolerations = nil
	placement.Limits = map[string]string{"memory": "128Mi"}
	none := base.clone()
	none.NodeSelector = nil
	for i, want := range []Relay{base, image, placement, none} {
		if got := cfg.Forwards[i].Relay; !got.Equal(want) {
			t.Errorf("%s: relay\ngot  %+v\nwant %+v", cfg.Forwards[i].Name, got, want)
		}
	}
	// A forward's settings share nothing with the defaults'.
	cfg.Forwards[0].Relay.NodeSelector["pool"] = "changed"
	if cfg.Defaults.Relay.NodeSelector["pool"] != "tools" || cfg.Forwards[1].Relay.NodeSelector["pool"] != "tools" {
		t.Error("forwards share the defaults' nodeSelector")
	}
	if p, ok := cfg.Position("forwards[2].relay.resources.limits.memory"); !ok || p.Line != 28 {
		t.Errorf("Position(forwards[2].relay.resources.limits.memory) = %v, %v", p, ok)
	}
}

func TestParseRelayErrors(t *testing.T) {
	const head = "version: 1\nforwards:\n  - name: db\n    host: db.example.com\n    ports: [5432]\n    relay:\n"
	const overHint = "\n\thint: a container's request cannot exceed its limit: lower the request or raise the limit"
	runDiagTests(t, []diagTest{
		{
			"not a mapping",
			head + "      - image: x\n",
			[]string{"f.yaml:7:7: forwards[0].relay: expected a mapping, got a list"},
		},
		{
			"unknown field",
			head + "      imgae: x\n",
			[]string{"f.yaml:7:7: forwards[0].relay.imgae: unknown field \"imgae\"\n\thint: did you mean \"image\"?"},
		},
		{
			"image and namespace",
			head + "      image: ''\n      namespace: Relays\n",
			[]string{
				"f.yaml:7:14: forwards[0].relay.image: image must not be empty\n\thint: leave image out to use the relay image of this kpf's version",
				"f.yaml:8:18: forwards[0].relay.namespace: invalid namespace \"Relays\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
			},
		},
		{
			"image with a space",
			head + "      image: 'relay:v1 '\n",
			[]string{"f.yaml:7:14: forwards[0].relay.image: invalid image \"relay:v1 \": an image reference has no spaces\n\thint: write REGISTRY/REPOSITORY:TAG, optionally with @sha256:DIGEST"},
		},
		{
			"node selector",
			head + "      nodeSelector:\n        example.com/: a\n        zone: [a]\n        arch: 1\n        os: linux\n        os: windows\n",
			[]string{
				"f.yaml:8:9: forwards[0].relay.nodeSelector.example.com/: invalid node label \"example.com/\": name part must be non-empty\n\thint: " + nodeLabelHint,
				"f.yaml:9:15: forwards[0].relay.nodeSelector.zone: expected a string, got a list",
				"f.yaml:10:15: forwards[0].relay.nodeSelector.arch: expected a string, got an integer\n\thint: quote it: \"1\"",
				"f.yaml:12:9: forwards[0].relay.nodeSelector.os: duplicate key \"os\"\n\thint: first at f.yaml:11:9",
			},
		},
		{
			"tolerations",
			head + "      tolerations:\n" +
				"        - {key: a, operator: In}\n" +
				"        - {key: '', value: b}\n" +
				"        - {key: 'a b', operator: Exists}\n" +
				"        - {key: a, value: 'b c'}\n" +
				"        - {key: a, effect: NoExecute, tolerationSeconds: '30'}\n" +
				"        - {key: a, effect: Evict}\n" +
				"        - dedicated\n",
			[]string{
				"f.yaml:8:30: forwards[0].relay.tolerations[0].operator: unknown toleration operator \"In\"\n\thint: use Exists or Equal",
				"f.yaml:9:17: forwards[0].relay.tolerations[1].key: a toleration without a key must have operator: Exists\n\thint: set key, or operator: Exists to tolerate every taint",
				"f.yaml:10:17: forwards[0].relay.tolerations[2].key: invalid toleration key \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
				"f.yaml:11:27: forwards[0].relay.tolerations[3].value: invalid toleration value \"b c\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
				"f.yaml:12:58: forwards[0].relay.tolerations[4].tolerationSeconds: expected an integer, got a string",
				"f.yaml:13:28: forwards[0].relay.tolerations[5].effect: unknown taint effect \"Evict\"\n\thint: use NoSchedule, PreferNoSchedule or NoExecute, or leave effect out to match every effect",
				"f.yaml:14:11: forwards[0].relay.tolerations[6]: expected a mapping, got a string",
			},
		},
		{
			"resources",
			head + "      resources:\n        requests: {memory: 64MB, cpu: '-1', storage: 1Gi}\n        limits: {cpu: [1], memory: 2 cores}\n        claims: []\n",
			[]string{
				"f.yaml:8:28: forwards[0].relay.resources.requests.memory: invalid quantity \"64MB\"\n\thint: did you mean \"64Mi\"?",
				"f.yaml:8:39: forwards[0].relay.resources.requests.cpu: cpu request must be positive, got -1\n\thint: leave cpu out of requests for none",
				"f.yaml:8:45: forwards[0].relay.resources.requests.storage: unknown resource \"storage\"\n\thint: the relay's resources are cpu, memory and ephemeral-storage",
				"f.yaml:9:23: forwards[0].relay.resources.limits.cpu: expected a quantity such as 500m or 64Mi, got a list",
				"f.yaml:9:36: forwards[0].relay.resources.limits.memory: invalid quantity \"2 cores\"\n\thint: write bytes with a unit, as in \"64Mi\" or \"1Gi\"",
				"f.yaml:10:9: forwards[0].relay.resources.claims: unknown field \"claims\"",
			},
		},
		{
			"empty requests",
			head + "      resources: {requests: {}}\n",
			[]string{"f.yaml:7:29: forwards[0].relay.resources.requests: requests must not be empty\n\thint: leave requests out to use kpf's defaults (cpu 10m, memory 16Mi)"},
		},
		{
			"request over a written limit",
			head + "      resources: {requests: {cpu: 2}, limits: {cpu: 1500m}}\n",
			[]string{"f.yaml:7:35: forwards[0].relay.resources.requests.cpu: cpu request 2 is greater than its limit 1500m" + overHint},
		},
		{
			"request over kpf's default limit",
			head + "      resources: {requests: {memory: 1Gi}}\n",
			[]string{"f.yaml:7:38: forwards[0].relay.resources.requests.memory: memory request 1Gi is greater than its limit 64Mi (kpf's default)" + overHint},
		},
		{
			"limit under kpf's default request",
			head + "      resources: {limits: {cpu: 5m}}\n",
			[]string{"f.yaml:7:33: forwards[0].relay.resources.limits.cpu: cpu limit 5m is less than its request 10m (kpf's default)" + overHint},
		},
		{
			"limit in defaults under a request of a forward, reported once",
			"version: 1\ndefaults:\n  relay: {resources: {limits: {cpu: 100m}}}\nforwards:\n" +
				"  - {name: a, host: a.example.com, ports: [11001], relay: {resources: {requests: {cpu: 200m}}}}\n" +
				"  - {name: b, host: b.example.com, ports: [11002]}\n",
			[]string{"f.yaml:5:88: forwards[0].relay.resources.requests.cpu: cpu request 200m is greater than its limit 100m (from defaults.relay)" + overHint},
		},
		{
			"clash within defaults, reported there only",
			"version: 1\ndefaults:\n  relay: {resources: {limits: {memory: 8Mi}}}\nforwards:\n  - {name: a, host: a.example.com, ports: [11001]}\n",
			[]string{"f.yaml:3:40: defaults.relay.resources.limits.memory: memory limit 8Mi is less than its request 16Mi (kpf's default)" + overHint},
		},
		{
			"relay on pod targets is a warning, on services and hosts not",
			"version: 1\ndefaults:\n  relay: {namespace: relays}\nforwards:\n" +
				"  - {name: a, pod: a, ports: [11001], relay: {namespace: other}}\n" +
				"  - {name: b, selector: app=b, ports: [11002], relay: {}}\n" +
				"  - {name: c, deployment: c, ports: [11003]}\n" +
				"  - {name: d, service: d, ports: [11004], relay: {namespace: other}}\n" +
				"  - {name: e, host: e.example.com, ports: [11005], relay: {namespace: other}}\n",
			[]string{
				"f.yaml:5:46: warning: forwards[0].relay: relay has no effect on a pod target: kpf reaches its pods without the relay\n\thint: remove it",
				"f.yaml:6:55: warning: forwards[1].relay: relay has no effect on a selector target: kpf reaches its pods without the relay\n\thint: remove it",
			},
		},
	})
}

// A config built in code has no positions: zero relay settings mean kpf's
// defaults and are valid; set ones are checked.
func TestValidateRelayInCode(t *testing.T) {
	f := Forward{
		Name: "db", Namespace: "default", Target: Target{Kind: Host, Name: "db.example.com"}, Address: Localhost, Enabled: true,
		Balance: BalanceFirst, WaitForReady: time.Second, Ports: []PortMapping{{Local: 5432, Remote: Port{Number: 5432}}},
		Health: Health{Port: Port{Number: 5432}, Interval: time.Second, Timeout: time.Millisecond, Threshold: 1},
	}
	c := &Config{Version: 1, Forwards: []Forward{f}}
	if ds := c.Validate(); len(ds) != 0 {
		t.Errorf("zero relay: %v", ds)
	}
	c.Forwards[0].Relay = Relay{
		Namespace: "Bad", NodeSelector: map[string]string{"-x": "y"}, Tolerations: []Toleration{{Key: "a", Operator: "Equal", Effect: "NoExecute", Seconds: new(int64(-1))}},
		Requests: map[string]string{"gpu": "1"}, Limits: map[string]string{"cpu": "lots"},
	}
	var got []string
	for _, d := range c.Validate() {
		got = append(got, d.Path+": "+d.Message)
	}
	want := []string{
		`forwards[0].relay.namespace: invalid namespace "Bad": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
		`forwards[0].relay.nodeSelector.-x: invalid node label "-x": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
		`forwards[0].relay.tolerations[0].tolerationSeconds: tolerationSeconds -1 is negative`,
		`forwards[0].relay.resources.requests.gpu: unknown resource "gpu"`,
		`forwards[0].relay.resources.limits.cpu: invalid quantity "lots"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A pod forward with relay settings is warned about.
	c.Forwards[0].Target = Target{Kind: Pod, Name: "db-0"}
	c.Forwards[0].Relay = Relay{Namespace: "relays"}
	if ds := c.Validate(); len(ds) != 1 || ds[0].Severity != SeverityWarning || !strings.Contains(ds[0].Message, "relay has no effect on a pod target") {
		t.Errorf("relay on a pod: %v", ds)
	}
}
