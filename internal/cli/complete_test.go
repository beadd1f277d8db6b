package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const namesConfig = `version: 1
forwards:
  - name: web
    service: web
    ports: [18080]
    groups: [front]
  - name: db
    statefulset: postgres
    ports: ["15432:5432"]
    groups: [data]
  - name: cache
    deployment: redis
    ports: [16379]
    groups: [data]
    enabled: false
`

// complete asks kpf's completion engine, as a shell script would, for the
// completions of args (the last one is the word being completed).
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	code, out := run(t, append([]string{"__complete"}, args...)...)
	if code != ExitOK {
		t.Fatalf("exit code %d:\n%s", code, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(l, ":") || strings.HasPrefix(l, "Completion ended") {
			continue
		}
		got = append(got, strings.SplitN(l, "\t", 2)[0])
	}
	return got
}

func TestCompleteNames(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "forwards.yaml")
	if err := os.WriteFile(file, []byte(namesConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(other, []byte(minimal), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(sub)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"up, file found from the directory up", []string{"up", ""}, "web db cache front data"},
		{"prefix", []string{"up", "d"}, "db data"},
		{"names already given are left out", []string{"up", "db", ""}, "web cache front data"},
		{"after a flag", []string{"up", "-v", "--once", "w"}, "web"},
		{"-f names the file", []string{"up", "-f", other, ""}, "web"},
		{"--file=", []string{"restart", "--file=" + other, ""}, "web"},
		{"restart", []string{"restart", "c"}, "cache"},
		{"doctor", []string{"doctor", "-o", "json", "f"}, "front"},
		{"doctor output formats", []string{"doctor", "-o", ""}, "table json"},
		{"subcommands", []string{"u"}, "up"},
		{"flag values", []string{"status", "-o", ""}, "table json"},
		{"log formats", []string{"up", "--log-format", ""}, "text json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(complete(t, tt.args...), " "); got != tt.want {
				t.Errorf("completions %q, want %q", got, tt.want)
			}
		})
	}
	t.Run("invalid file completes nothing, quietly", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.yaml")
		if err := os.WriteFile(bad, []byte("version: 1\nforwards: [{servce: web}]\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := complete(t, "up", "-f", bad, ""); len(got) != 0 {
			t.Errorf("completions %q, want none", got)
		}
	})
}

func TestCompleteContexts(t *testing.T) {
	kubeconfig, err := filepath.Abs(filepath.Join("..", "..", "testdata", "config", "kubeconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(complete(t, "validate", "--kubeconfig", kubeconfig, "--context", "prod"), " ")
	if got == "" || !strings.Contains(got, "prod-eu") || strings.Contains(got, "kpf") {
		t.Errorf("contexts %q: want those starting with prod, prod-eu among them", got)
	}
}
