package archdoc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kpf-dev/kpf/"

// The list in docs/architecture.md is what go list says each package
// imports of kpf's own.
func TestArchitectureMatchesGoList(t *testing.T) {
	root := filepath.Join("..", "..")
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}", "./cmd/...", "./internal/...", "./pkg/...", "./schema")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var want []string
	for line := range strings.Lines(string(out)) {
		name, imports, _ := strings.Cut(strings.TrimSpace(line), ":")
		var own []string
		for imp := range strings.FieldsSeq(imports) {
			if strings.HasPrefix(imp, module) {
				own = append(own, strings.TrimPrefix(imp, module))
			}
		}
		slices.Sort(own)
		want = append(want, strings.TrimSpace(strings.TrimPrefix(name, module)+": "+strings.Join(own, " ")))
	}
	slices.Sort(want)

	doc, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- deps:begin -->\n```\n")
	block, _, ok2 := strings.Cut(block, "```\n<!-- deps:end -->")
	if !ok || !ok2 {
		t.Fatal("docs/architecture.md has no deps block")
	}
	var got []string
	for line := range strings.Lines(block) {
		got = append(got, strings.TrimSpace(line))
	}
	if !slices.Equal(got, want) {
		t.Errorf("docs/architecture.md's dependency list is not what go list says; it should read:\n%s", strings.Join(want, "\n"))
	}
}
