package config

import (
	"errors"
	"strings"
	"testing"
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
