package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkParseAliasBomb measures how fast a merge-key alias bomb (10^9
// expansions if followed) is rejected.
func BenchmarkParseAliasBomb(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "config", "invalid", "alias-bomb.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse("bomb.yaml", data); err == nil || !strings.Contains(err.Error(), "document too complex") {
			b.Fatalf("got %v", err)
		}
	}
}

// BenchmarkParseHugeFile measures how fast Load rejects a 1 GiB file: it
// reads MaxFileSize+1 bytes and stops.
func BenchmarkParseHugeFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), FileName)
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	f.WriteString("version: 1\n")
	if err := f.Truncate(1 << 30); err != nil { // sparse: no disk used
		b.Fatal(err)
	}
	f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Load(path); err == nil || !strings.Contains(err.Error(), "larger than the limit") {
			b.Fatalf("got %v", err)
		}
	}
}

// largestFile is a valid forwards.yaml just under MaxFileSize, without
// aliases: about 11000 forwards.
func largestFile() []byte {
	var sb strings.Builder
	sb.WriteString("version: 1\ndefaults: {context: dev, namespace: apps}\nforwards:\n")
	for i := 0; ; i++ {
		entry := fmt.Sprintf("  - name: service-%05d\n    service: service-%05d\n    ports: [\"%d:http\"]\n    groups: [g%d]\n", i, i, 10000+i, i%10)
		if sb.Len()+len(entry) > MaxFileSize {
			break
		}
		sb.WriteString(entry)
	}
	return []byte(sb.String())
}

// The alias budget counts only visits beyond the document's own nodes: the
// largest file kpf accepts, with no alias, is not "too complex".
func TestLargestFileParses(t *testing.T) {
	cfg, _, err := Parse("large.yaml", largestFile())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Forwards) < 10000 {
		t.Errorf("%d forwards", len(cfg.Forwards))
	}
}

// BenchmarkParseLargestFile measures the worst file kpf accepts: valid and
// just under MaxFileSize, about 11000 forwards.
func BenchmarkParseLargestFile(b *testing.B) {
	data := largestFile()
	cfg, _, err := Parse("large.yaml", data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(cfg.Forwards)), "forwards")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Parse("large.yaml", data); err != nil {
			b.Fatal(err)
		}
	}
}
