package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	}{
		{"no args", nil, ExitUsage, "Usage:"},
		{"help", []string{"help"}, ExitOK, "Commands:"},
		{"unknown command", []string{"frobnicate"}, ExitUsage, `unknown command "frobnicate"`},
		{"bad flag", []string{"validate", "--nope"}, ExitUsage, "flag provided but not defined"},
		{"extra argument", []string{"validate", "-f", "x.yaml", "extra"}, ExitUsage, `unexpected argument "extra"`},
		{"validate help", []string{"validate", "-h"}, ExitOK, "kpf validate [-f FILE]"},
		{"missing file", []string{"validate", "-f", "does-not-exist.yaml"}, ExitInvalid, "does-not-exist.yaml"},
		{"version", []string{"version"}, ExitOK, "kpf "},
		{"version extra", []string{"version", "x"}, ExitUsage, "unexpected argument"},
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
		})
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
