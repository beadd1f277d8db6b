package spdystream

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/upstream.diff from the files as they are")

// upstreamFiles are the files of github.com/moby/spdystream this package
// carries; headers.go and doc.go are kpf's own.
var upstreamFiles = []string{"connection.go", "handlers.go", "priority.go", "stream.go", "utils.go"}

// The copy differs from upstream v0.5.1 by exactly testdata/upstream.diff:
// a change to the copy, or a move to another upstream version, shows up
// here and in review, as a deliberate act. After such a change, run
// go test ./internal/spdystream -run TestDiffAgainstUpstream -update
// and read the new diff.
func TestDiffAgainstUpstream(t *testing.T) {
	if _, err := exec.LookPath("diff"); err != nil {
		t.Skip("no diff program here")
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/moby/spdystream").Output()
	if err != nil {
		t.Fatalf("find upstream's module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if !strings.HasSuffix(dir, "@v0.5.1") {
		t.Fatalf("upstream is %s; this copy is of v0.5.1: update the copy, its doc and this test together", dir)
	}
	var got bytes.Buffer
	for _, f := range upstreamFiles {
		cmd := exec.Command("diff", "-u", "--label", "upstream/"+f, "--label", "kpf/"+f, filepath.Join(dir, f), f)
		d, err := cmd.Output()
		if ee, ok := errors.AsType[*exec.ExitError](err); err != nil && (!ok || ee.ExitCode() != 1) {
			t.Fatalf("diff %s: %v", f, err)
		}
		got.Write(d)
	}
	golden := filepath.Join("testdata", "upstream.diff")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("the copy's difference from upstream v0.5.1 is not testdata/upstream.diff; if the change is meant, run with -update and review the diff")
	}
}
