package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// These tests drive the real kpf program through real shells and kubectl:
// the test binary runs main when KPF_TEST_RUN_MAIN is set, and is linked
// into a directory on PATH as kpf and kubectl-kpf.

func TestMain(m *testing.M) {
	if os.Getenv("KPF_TEST_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// programDir returns a directory holding this test binary as kpf and as
// kubectl-kpf, and an environment whose PATH starts with it.
func programDir(t *testing.T) (string, []string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"kpf", "kubectl-kpf"} {
		if err := os.Symlink(self, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(), "KPF_TEST_RUN_MAIN=1", "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir, env
}

// need returns the path of a program the test needs. In CI (CI=true),
// which installs them all, a missing one fails the test; elsewhere it
// skips it.
func need(t *testing.T, name string, alternatives ...string) string {
	t.Helper()
	for _, n := range append([]string{name}, alternatives...) {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		if _, err := os.Stat(n); err == nil {
			return n
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI installs it: see .ci/run)", name)
	}
	t.Skipf("%s is not installed", name)
	return ""
}

const forwardsYAML = `version: 1
forwards:
  - name: web
    service: web
    ports: [18080]
    groups: [front]
  - name: db
    statefulset: postgres
    ports: ["15432:5432"]
`

// TestBashCompletion sources `kpf completion bash` into a real bash with
// the bash-completion package, as a user's shell would, and completes
// command lines the way pressing TAB does.
func TestBashCompletion(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("bash completion is tested on Unix")
	}
	bash := need(t, "bash")
	lib := need(t, "/usr/share/bash-completion/bash_completion")
	_, env := programDir(t)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "forwards.yaml"), []byte(forwardsYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		line string // the command line up to the cursor
		want string // COMPREPLY, space-separated
	}{
		{"kpf u", "up"},
		{"kpf st", "status"},
		{"kpf up ", "web db front"},
		{"kpf up w", "web"},
		{"kpf up web ", "db front"},
		{"kpf up --onc", "--once"},
		{"kpf restart d", "db"},
		{"kpf status -o ", "table json"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			// No set -e: bash-completion's helpers end on tests that
			// return 1 by design. A script that fails to load leaves
			// COMPREPLY empty, which the comparison catches.
			script := `source "$1"
source <(kpf completion bash)
# compopt only tunes how bash shows the candidates (no space after a
# name, say) and fails outside a real TAB; COMPREPLY is what is tested.
compopt() { :; }
line="$2"
read -r -a COMP_WORDS <<< "$line"
[[ "$line" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="$line"
COMP_POINT=${#line}
__start_kpf
echo "${COMPREPLY[*]}"
`
			cmd := exec.Command(bash, "--norc", "--noprofile", "-c", script, "bash", lib, tt.line)
			cmd.Dir = work
			cmd.Env = env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("completing %q: %q, want %q", tt.line, got, tt.want)
			}
		})
	}
}

// TestCompletionScriptsParse checks the zsh and fish scripts with the
// shells' own syntax checkers. (PowerShell is not available here.)
func TestCompletionScriptsParse(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("zsh and fish are tested on Unix")
	}
	dir, env := programDir(t)
	for _, tt := range []struct {
		shell string
		check []string
	}{
		{"zsh", []string{"-n"}},
		{"fish", []string{"--no-execute"}},
	} {
		t.Run(tt.shell, func(t *testing.T) {
			shell := need(t, tt.shell)
			script := filepath.Join(t.TempDir(), "kpf."+tt.shell)
			gen := exec.Command(filepath.Join(dir, "kpf"), "completion", tt.shell)
			gen.Env = env
			out, err := gen.Output()
			if err != nil || len(out) == 0 {
				t.Fatalf("kpf completion %s: %v", tt.shell, err)
			}
			if err := os.WriteFile(script, out, 0o644); err != nil {
				t.Fatal(err)
			}
			check := exec.Command(shell, append(tt.check, script)...)
			if out, err := check.CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", tt.shell, err, out)
			}
		})
	}
}

// TestKubectlPlugin runs kpf through kubectl's plugin mechanism: kubectl
// finds kubectl-kpf on PATH and runs it for `kubectl kpf`.
func TestKubectlPlugin(t *testing.T) {
	kubectl := need(t, "kubectl")
	_, env := programDir(t)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectl, args...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if out := run("kpf", "version"); !strings.HasPrefix(out, "kpf ") {
		t.Errorf("kubectl kpf version printed %q", out)
	}
	if out := run("kpf", "up", "--help"); !strings.Contains(out, "kubectl kpf up [NAME...]") {
		t.Errorf("kubectl kpf up --help does not say kubectl kpf:\n%s", out)
	}
	if out := run("plugin", "list"); !strings.Contains(out, "kubectl-kpf") {
		t.Errorf("kubectl plugin list does not show kubectl-kpf:\n%s", out)
	}
}
