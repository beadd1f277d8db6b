package control

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSocketIn(t *testing.T) {
	name := socketName("/repo/forwards.yaml")
	if len(name) != 21 {
		t.Fatalf("socket name %q is %d bytes, want 21", name, len(name))
	}
	dirOf := func(n int) string { return "/" + strings.Repeat("d", n-1) } // a directory path of n bytes
	const macOS, linux = 103, 107
	// The longest fallback, for the largest uid: it must fit on every system.
	worst := "/tmp/kpf-4294967295"
	for _, tt := range []struct {
		name string
		dirs []string
		max  int
		want string // the directory chosen; "" for an error
	}{
		{"short tmpdir", []string{"/var/folders/ab/cd/T/kpf-501", "/tmp/kpf-501"}, macOS, "/var/folders/ab/cd/T/kpf-501"},
		{"100-byte tmpdir on macOS", []string{dirOf(100) + "/kpf-501", "/tmp/kpf-501"}, macOS, "/tmp/kpf-501"},
		{"100-byte tmpdir on Linux", []string{dirOf(100) + "/kpf-501", "/tmp/kpf-501"}, linux, "/tmp/kpf-501"},
		{"exactly 103 bytes fits on macOS", []string{dirOf(macOS - 22), "/tmp/kpf-501"}, macOS, dirOf(macOS - 22)},
		{"104 bytes does not", []string{dirOf(macOS - 21), "/tmp/kpf-501"}, macOS, "/tmp/kpf-501"},
		{"104 bytes fits on Linux", []string{dirOf(macOS - 21), "/tmp/kpf-501"}, linux, dirOf(macOS - 21)},
		{"108 bytes does not fit on Linux", []string{dirOf(linux - 21), "/tmp/kpf-501"}, linux, "/tmp/kpf-501"},
		{"long runtime dir", []string{dirOf(90) + "/kpf", "/tmp/kpf-501"}, linux, "/tmp/kpf-501"},
		{"largest uid on macOS", []string{dirOf(200), worst}, macOS, worst},
		{"nothing fits", []string{dirOf(200)}, macOS, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := socketIn(tt.dirs, name, tt.max)
			if tt.want == "" {
				if err == nil {
					t.Errorf("socketIn = %s, want an error", got)
				}
				return
			}
			if err != nil || got != tt.want+"/"+name {
				t.Errorf("socketIn = %q, %v; want %q", got, err, tt.want+"/"+name)
			}
			if len(got) > tt.max {
				t.Errorf("socketIn = %q, %d bytes, more than %d", got, len(got), tt.max)
			}
		})
	}
}

func TestPipeName(t *testing.T) {
	const me, other = "S-1-5-21-1004336348-1177238915-682003330-1001", "S-1-5-21-1004336348-1177238915-682003330-1002"
	a := pipeName(me, `C:\repo\a\forwards.yaml`)
	if !strings.HasPrefix(a, `\\.\pipe\kpf-`) || len(a) != len(`\\.\pipe\kpf-`)+16 {
		t.Errorf("pipe name %q, want \\\\.\\pipe\\kpf- and 16 hex digits", a)
	}
	if a != pipeName(me, `C:\repo\a\forwards.yaml`) {
		t.Error("pipeName is not a function of its arguments")
	}
	if b := pipeName(me, `C:\repo\b\forwards.yaml`); a == b {
		t.Errorf("two files share the pipe %s", a)
	}
	if o := pipeName(other, `C:\repo\a\forwards.yaml`); a == o {
		t.Errorf("two users share the pipe %s for one file", a)
	}
}

func TestPipeSDDL(t *testing.T) {
	for _, tt := range []struct {
		sid  string
		want string // "" for an error
	}{
		{"S-1-5-21-1004336348-1177238915-682003330-1001", "O:S-1-5-21-1004336348-1177238915-682003330-1001D:P(A;;GA;;;S-1-5-21-1004336348-1177238915-682003330-1001)"},
		{"S-1-5-18", "O:S-1-5-18D:P(A;;GA;;;S-1-5-18)"},
		{"", ""},
		{"WD", ""}, // an SDDL alias for Everyone, not a SID
		{"S-1-5-21-1)(A;;GA;;;WD", ""},
		{"S-1-5-21-1\n", ""},
		{"S-1", ""},
	} {
		got, err := pipeSDDL(tt.sid)
		if tt.want == "" && err == nil || tt.want != "" && (err != nil || got != tt.want) {
			t.Errorf("pipeSDDL(%q) = %q, %v; want %q", tt.sid, got, err, tt.want)
		}
	}
}

func TestInvalidConfigKeepsTheCause(t *testing.T) {
	cause := fmt.Errorf("forwards.yaml:1:1: %w", os.ErrNotExist)
	err := InvalidConfig(cause)
	if err.Error() != cause.Error() || !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("InvalidConfig(%v) = %v", cause, err)
	}
}
