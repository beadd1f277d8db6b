package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kpf-dev/kpf/schema"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// run runs kpf with args and returns its exit code and combined output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	code := Main(t.Context(), args, strings.NewReader(""), &out, &out)
	return code, out.String()
}

// TestValidateFixtures pins the exact output of kpf validate for every
// fixture: invalid ones exit 1, valid ones exit 0 and print the plan.
func TestValidateFixtures(t *testing.T) {
	t.Chdir("../..")
	for dir, wantCode := range map[string]int{"valid": ExitOK, "invalid": ExitInvalid} {
		files, err := filepath.Glob(filepath.Join("testdata", "config", dir, "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no fixtures in %s: %v", dir, err)
		}
		for _, file := range files {
			t.Run(dir+"/"+filepath.Base(file), func(t *testing.T) {
				code, got := run(t, "validate", "-f", file, "--kubeconfig", "testdata/config/kubeconfig.yaml")
				if code != wantCode {
					t.Errorf("exit code %d, want %d; output:\n%s", code, wantCode, got)
				}
				golden := strings.TrimSuffix(file, ".yaml") + ".golden"
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					return
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run go test ./pkg/cli -update)", err)
				}
				if got != string(want) {
					t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
				}
			})
		}
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want int
		out  string // a substring of the output
		not  string // must not be in the output
	}{
		{"no args", nil, ExitUsage, "Usage:", ""},
		{"help", []string{"help"}, ExitOK, "Available Commands:", ""},
		{"--help", []string{"--help"}, ExitOK, "Available Commands:", ""},
		{"help command", []string{"help", "up"}, ExitOK, "kpf up [NAME...] [flags]", ""},
		{"unknown command", []string{"frobnicate"}, ExitUsage, `kpf: unknown command "frobnicate"`, "Usage:"},
		{"mistyped command", []string{"stauts"}, ExitUsage, "did you mean kpf status?", "Usage:"},
		{"unknown flag", []string{"validate", "--nope"}, ExitUsage, "kpf validate: unknown flag --nope\n\thint: kpf validate --help lists the flags", "Usage:"},
		{"mistyped flag", []string{"up", "--onec"}, ExitUsage, "did you mean --once?", "Usage:"},
		{"unknown shorthand", []string{"status", "-x"}, ExitUsage, "kpf status: unknown flag -x", "Usage:"},
		{"bad duration", []string{"up", "--timeout", "soon"}, ExitUsage, `invalid argument "soon" for "--timeout"`, "Usage:"},
		{"extra argument", []string{"validate", "-f", "x.yaml", "extra"}, ExitUsage, `kpf validate: unexpected argument "extra"`, ""},
		{"validate help", []string{"validate", "-h"}, ExitOK, "kpf validate [flags]", ""},
		{"long file flag", []string{"validate", "--file", "does-not-exist.yaml"}, ExitInvalid, "does-not-exist.yaml", ""},
		{"missing file", []string{"validate", "-f", "does-not-exist.yaml"}, ExitInvalid, "does-not-exist.yaml", ""},
		{"restart without names", []string{"restart"}, ExitUsage, "kpf restart: name at least one forward", ""},
		{"version", []string{"version"}, ExitOK, "kpf ", ""},
		{"--version", []string{"--version"}, ExitOK, "kpf ", ""},
		{"version extra", []string{"version", "x"}, ExitUsage, "unexpected argument", ""},
		{"bad output format", []string{"status", "-o", "yaml", "-f", "x.yaml"}, ExitUsage, `unknown output format "yaml"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := run(t, tt.args...)
			if code != tt.want {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tt.want, out)
			}
			if !strings.Contains(out, tt.out) {
				t.Errorf("output does not contain %q:\n%s", tt.out, out)
			}
			if tt.not != "" && strings.Contains(out, tt.not) {
				t.Errorf("output contains %q:\n%s", tt.not, out)
			}
			if n := strings.Count(out, "kpf: kpf"); n > 0 {
				t.Errorf("doubled prefix in output:\n%s", out)
			}
		})
	}
}

// TestHelpOnStdout: help asked for goes to standard output, so that
// `kpf up -h | less` works; a usage error goes to standard error.
func TestHelpOnStdout(t *testing.T) {
	for _, args := range [][]string{{"up", "-h"}, {"help", "status"}, {"--help"}} {
		var stdout, stderr bytes.Buffer
		code := Main(t.Context(), args, strings.NewReader(""), &stdout, &stderr)
		if code != ExitOK || !strings.Contains(stdout.String(), "Usage:") || stderr.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := Main(t.Context(), []string{"up", "--bogus"}, strings.NewReader(""), &stdout, &stderr); code != ExitUsage || stdout.Len() != 0 {
		t.Errorf("bad flag: exit %d, stdout %q", code, stdout.String())
	}
}

// TestFlagsAnywhere: flags may follow the names, GNU style, as in kubectl.
func TestFlagsAnywhere(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "forwards.yaml")
	if err := os.WriteFile(file, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_RUNTIME_DIR", dir)
	kubeconfig := filepath.Join("..", "..", "testdata", "config", "kubeconfig.yaml")
	// The name is checked against the file before anything is dialled:
	// "nope" is reported, and -v is taken as a flag, not a name.
	code, out := run(t, "up", "-f", file, "nope", "-v", "--kubeconfig", kubeconfig)
	if code != ExitUsage || !strings.Contains(out, `"nope"`) || strings.Contains(out, `"-v"`) {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
	code, out = run(t, "validate", "--kubeconfig", kubeconfig, "--file", file, "--context", "prod-eu")
	if code != ExitOK || !strings.Contains(out, "prod-eu") {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
}

func TestProgramName(t *testing.T) {
	for argv0, want := range map[string]string{
		"kpf":                           "kpf",
		"/usr/local/bin/kpf":            "kpf",
		"kubectl-kpf":                   "kubectl kpf",
		"/home/u/.krew/bin/kubectl-kpf": "kubectl kpf",
		`C:\tools\kubectl-kpf.exe`:      "kubectl kpf",
		`C:\tools\KPF.EXE`:              "kpf",
		"kubectl-kpf-old":               "kpf",
	} {
		if got := ProgramName(argv0); got != want {
			t.Errorf("ProgramName(%q) = %q, want %q", argv0, got, want)
		}
	}
}

// TestKubectlPluginHelp: run as a kubectl plugin, help and examples say
// "kubectl kpf".
func TestKubectlPluginHelp(t *testing.T) {
	var out bytes.Buffer
	env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out, Name: "kubectl kpf"}
	if code := Run(t.Context(), env, []string{"up", "--help"}); code != ExitOK {
		t.Fatalf("exit code %d:\n%s", code, out.String())
	}
	for _, want := range []string{"kubectl kpf up [NAME...] [flags]", "  kubectl kpf up api db"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help does not contain %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "\n  kpf ") {
		t.Errorf("help still shows a bare kpf command:\n%s", out.String())
	}
	out.Reset()
	if code := Run(t.Context(), env, []string{"up", "--bogus"}); code != ExitUsage || !strings.Contains(out.String(), "kubectl kpf up: unknown flag --bogus") {
		t.Errorf("exit code %d:\n%s", code, out.String())
	}
}

// TestSchemaCommand: kpf schema prints the schema the binary embeds, with
// its stable $id.
func TestSchemaCommand(t *testing.T) {
	code, out := run(t, "schema")
	if code != ExitOK {
		t.Fatalf("exit code %d:\n%s", code, out)
	}
	var doc struct {
		ID     string `json:"$id"`
		Schema string `json:"$schema"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if doc.ID != schema.ID || doc.Schema == "" {
		t.Errorf("$id %q, $schema %q", doc.ID, doc.Schema)
	}
	onDisk, err := os.ReadFile("../../schema/forwards.schema.json")
	if err != nil || string(onDisk) != out {
		t.Errorf("kpf schema differs from schema/forwards.schema.json (%v)", err)
	}
}

const minimal = "version: 1\nforwards:\n  - service: web\n    ports: [18080]\n"

// TestValidateFindsFileAndWithoutKubeconfig runs validate with no -f from a
// subdirectory and with no kubeconfig anywhere.
func TestValidateFindsFileAndWithoutKubeconfig(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "forwards.yaml"), []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", dir)
	t.Setenv("KUBECONFIG", "")
	t.Chdir(sub)
	code, out := run(t, "validate")
	if code != ExitOK {
		t.Fatalf("exit code %d; output:\n%s", code, out)
	}
	for _, want := range []string{"../../forwards.yaml: 1 forward (1 enabled)", "(current-context)", "svc/web"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not contain %q:\n%s", want, out)
		}
	}
}

func TestValidateContextFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "forwards.yaml")
	if err := os.WriteFile(file, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join("..", "..", "testdata", "config", "kubeconfig.yaml")
	tests := []struct {
		context string
		want    []string
	}{
		{"", []string{"web   kpf "}},
		{"prod-eu", []string{"web   prod-eu "}},
		{"nope", []string{"web   nope ", `warning: --context "nope" not found in kubeconfig`}},
	}
	for _, tt := range tests {
		t.Run(tt.context, func(t *testing.T) {
			code, out := run(t, "validate", "-f", file, "--kubeconfig", kubeconfig, "--context", tt.context)
			if code != ExitOK {
				t.Fatalf("exit code %d; output:\n%s", code, out)
			}
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("output does not contain %q:\n%s", want, out)
				}
			}
		})
	}
	t.Run("missing kubeconfig", func(t *testing.T) {
		code, out := run(t, "validate", "-f", file, "--kubeconfig", filepath.Join(dir, "none"))
		if code != ExitInvalid || !strings.Contains(out, "load kubeconfig") {
			t.Errorf("exit code %d, output:\n%s", code, out)
		}
	})
}

// TestRepoForwardsYAML keeps the demo config at the repository root clean.
func TestRepoForwardsYAML(t *testing.T) {
	t.Chdir("../..")
	code, out := run(t, "validate", "-f", "forwards.yaml", "--kubeconfig", "testdata/config/kubeconfig.yaml")
	if code != ExitOK || strings.Contains(out, "warning") || !strings.Contains(out, "5 forwards (5 enabled)") {
		t.Errorf("exit code %d, output:\n%s", code, out)
	}
}

// An empty host (--metrics-addr :9091) listens on every interface: it
// must get the non-loopback warning. It did not, when "" counted as
// loopback.
func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"":                 false,
		"0.0.0.0":          false,
		"::":               false,
		"10.0.0.1":         false,
		"localhost":        true,
		"127.0.0.1":        true,
		"127.0.0.2":        true,
		"::1":              true,
		"::ffff:127.0.0.1": true,
		"127.example.com":  false,
	} {
		if got := isLoopback(host); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", host, got, want)
		}
	}
}
