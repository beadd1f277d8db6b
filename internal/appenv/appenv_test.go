package appenv

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

func TestVars(t *testing.T) {
	got, err := Vars(Forward{
		Name:  "orders-db.eu",
		Ports: []Port{{Local: "127.0.0.1:15432", Remote: "5432", Also: []string{"5432", "postgres"}}, {Local: "127.0.0.1:19187", Remote: "metrics", Also: []string{"9187"}}},
		Env:   map[string]string{"DATABASE_URL": "postgres://app@{{.Host}}:{{.Port}}/app", "METRICS": `http://{{.Host}}:{{index .Ports "metrics"}}/`, "DB": `{{index .Ports "postgres"}}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Var{
		{"KPF_ORDERS_DB_EU_ADDR", "127.0.0.1:15432"},
		{"KPF_ORDERS_DB_EU_HOST", "127.0.0.1"},
		{"KPF_ORDERS_DB_EU_PORT", "15432"},
		{"KPF_ORDERS_DB_EU_PORT_5432", "15432"},
		{"KPF_ORDERS_DB_EU_PORT_9187", "19187"},
		{"KPF_ORDERS_DB_EU_PORT_METRICS", "19187"},
		{"KPF_ORDERS_DB_EU_PORT_POSTGRES", "15432"},
		{"DATABASE_URL", "postgres://app@127.0.0.1:15432/app"},
		{"DB", "15432"},
		{"METRICS", "http://127.0.0.1:19187/"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("var %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestVarsKeepTCPAndUDPOfOnePortApart(t *testing.T) {
	got, err := Vars(Forward{
		Name:  "dns",
		Ports: []Port{{Local: "127.0.0.1:5353", Remote: "53/udp", Also: []string{"dns/udp"}}, {Local: "127.0.0.1:5354", Remote: "53"}},
		Env:   map[string]string{"RESOLVER": `{{.Host}}:{{index .Ports "53/udp"}}`, "TCP": `{{index .Ports "53"}}`},
	})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]string{}
	for _, v := range got {
		have[v.Name] = v.Value
	}
	for name, want := range map[string]string{
		"KPF_DNS_PORT_53_UDP": "5353", "KPF_DNS_PORT_DNS_UDP": "5353", "KPF_DNS_PORT_53": "5354",
		"RESOLVER": "127.0.0.1:5353", "TCP": "5354",
	} {
		if have[name] != want {
			t.Errorf("%s = %q, want %q (all: %v)", name, have[name], want, got)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tt := range []struct{ text, err string }{
		{"postgres://{{.Host}}:{{.Port}}", ""},
		{`{{index .Ports "5432"}} {{.Addr}} {{.Name}}`, ""},
		{"{{.Hots}}", "unknown field .Hots (the fields are .Name, .Host, .Port, .Addr and .Ports)"},
		{"{{.Host", "unclosed action"},
		{"{{env \"HOME\"}}", `function "env" not defined`},
	} {
		err := Check(tt.text)
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("Check(%q) = %v, want %q", tt.text, err, tt.err)
		}
	}
}

// What Write prints, read back by the consumers it is for: a POSIX shell
// evaluating the shell format, and sourcing the dotenv one with set -a.
func TestWriteIsReadBackByAShell(t *testing.T) {
	vars := []Var{{"PLAIN", "127.0.0.1:8080"}, {"SPACES", "a b  c"}, {"QUOTE", "it's $HOME `x` \\n"}, {"URL", "postgres://app@127.0.0.1:5432/app?sslmode=disable&x=1"}}
	for _, format := range []string{"shell", "dotenv"} {
		var b bytes.Buffer
		if err := Write(&b, format, vars); err != nil {
			t.Fatal(err)
		}
		script := "set -a\n" + b.String() + "\nprintf '%s\\n' \"$PLAIN\" \"$SPACES\" \"$QUOTE\" \"$URL\"\n"
		out, err := exec.Command("sh", "-c", script).Output()
		if err != nil {
			t.Fatalf("%s: sh: %v\n%s", format, err, b.String())
		}
		var want strings.Builder
		for _, v := range vars {
			want.WriteString(v.Value + "\n")
		}
		if string(out) != want.String() {
			t.Errorf("%s: the shell read\n%s\nwant\n%s", format, out, want.String())
		}
	}
}
