// Package release checks what GoReleaser writes to dist/. It builds
// nothing: it skips unless KPF_DIST names the directory (and fails if CI
// is set without it).
//
// After `task release:build` (this machine's target only, as CI runs it)
// it checks that binary and runs it. After `task release:snapshot`
// (KPF_DIST_FULL=1) it also checks that every platform kpf promises is
// there, built the way it must be, packaged with what users need, and
// listed with the right checksums in the checksum file, the krew manifest
// and the Homebrew cask.
package release

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// platforms are the targets kpf is released for.
var platforms = []struct{ goos, goarch string }{
	{"linux", "amd64"}, {"linux", "arm64"},
	{"darwin", "amd64"}, {"darwin", "arm64"},
	{"windows", "amd64"}, {"windows", "arm64"},
}

// metadata is the part of dist/metadata.json the checks use.
type metadata struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
}

func distDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KPF_DIST")
	if dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("KPF_DIST is not set: run go tool -modfile=tools/go.mod task release:snapshot")
		}
		t.Skip("KPF_DIST is not set: run go tool -modfile=tools/go.mod task release:snapshot")
	}
	return dir
}

func readMetadata(t *testing.T, dist string) metadata {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dist, "metadata.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m metadata
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("metadata.json: %v", err)
	}
	if m.Version == "" {
		t.Fatalf("metadata.json has no version: %s", b)
	}
	// The build must know the commit it was built from (GoReleaser says
	// "none" when it could not read the git state).
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatalf("git rev-parse HEAD: %v", err)
	}
	if want := strings.TrimSpace(string(head)); m.Commit != want {
		t.Fatalf("metadata.json says commit %q, the checkout is at %s", m.Commit, want)
	}
	return m
}

// archiveName is the archive .goreleaser.yaml names for a platform.
func archiveName(version, goos, goarch string) string {
	ext := ".tar.gz"
	if goos == "windows" {
		ext = ".zip"
	}
	return fmt.Sprintf("kpf_%s_%s_%s%s", version, goos, goarch, ext)
}

// fullSnapshot skips a test unless dist/ holds a whole snapshot release.
func fullSnapshot(t *testing.T) {
	t.Helper()
	if os.Getenv("KPF_DIST_FULL") != "1" {
		t.Skip("needs the whole snapshot release (task release:snapshot sets KPF_DIST_FULL=1)")
	}
}

// artifact is an entry of dist/artifacts.json.
type artifact struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	GOOS   string `json:"goos"`
	GOARCH string `json:"goarch"`
	Type   string `json:"type"`
}

// binaryFor returns the release binary built for goos/goarch.
func binaryFor(t *testing.T, dist, goos, goarch string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dist, "artifacts.json"))
	if err != nil {
		t.Fatal(err)
	}
	var arts []artifact
	if err := json.Unmarshal(b, &arts); err != nil {
		t.Fatalf("artifacts.json: %v", err)
	}
	for _, a := range arts {
		if a.Type == "Binary" && a.GOOS == goos && a.GOARCH == goarch {
			// Paths are relative to the directory GoReleaser ran in,
			// dist/'s parent.
			bin, err := os.ReadFile(filepath.Join(filepath.Dir(dist), a.Path))
			if err != nil {
				t.Fatal(err)
			}
			return bin
		}
	}
	t.Fatalf("artifacts.json lists no binary for %s/%s", goos, goarch)
	return nil
}

// TestHostBinary checks and runs the binary built for this machine.
func TestHostBinary(t *testing.T) {
	dist := distDir(t)
	meta := readMetadata(t, dist)
	checkBinary(t, binaryFor(t, dist, runtime.GOOS, runtime.GOARCH), runtime.GOOS, runtime.GOARCH, meta)
}

func TestArchives(t *testing.T) {
	dist := distDir(t)
	fullSnapshot(t)
	meta := readMetadata(t, dist)
	sums := checksums(t, dist)
	// The archives, and the relay image with its reference (see
	// TestRelayImage).
	if len(sums) != len(platforms)+2 || sums["kpf-relay-image.tar"] == "" || sums["image.txt"] == "" {
		t.Errorf("checksums.txt lists %v, want the %d archives, kpf-relay-image.tar and image.txt", sums, len(platforms))
	}
	for _, p := range platforms {
		name := archiveName(meta.Version, p.goos, p.goarch)
		t.Run(p.goos+"/"+p.goarch, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dist, name))
			if err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(data)
			if got := hex.EncodeToString(sum[:]); sums[name] != got {
				t.Errorf("checksums.txt says %s for %s, the file's is %s", sums[name], name, got)
			}
			files := unpack(t, name, data)
			exe := "kpf"
			if p.goos == "windows" {
				exe = "kpf.exe"
			}
			for _, want := range []string{exe, "LICENSE", "README.md",
				"licenses/spdystream/LICENSE", "licenses/spdystream/NOTICE",
				"completions/kpf.bash", "completions/kpf.zsh", "completions/kpf.fish",
				"completions/kpf.powershell", "completions/kubectl_complete-kpf"} {
				if len(files[want]) == 0 {
					t.Errorf("%s has no %s (or it is empty)", name, want)
				}
			}
			if bin := files[exe]; len(bin) > 0 {
				checkBinary(t, bin, p.goos, p.goarch, meta)
			}
		})
	}
}

// checksums reads dist/checksums.txt: file name → hex SHA-256.
func checksums(t *testing.T, dist string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if !ok || len(sum) != 64 {
			t.Fatalf("checksums.txt: bad line %q", line)
		}
		sums[name] = sum
	}
	return sums
}

// unpack returns the regular files of a .tar.gz or .zip archive by path.
func unpack(t *testing.T, name string, data []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	if strings.HasSuffix(name, ".zip") {
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if f.FileInfo().IsDir() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			files[f.Name] = b
		}
		return files
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		if (h.Name == "kpf" || h.Name == "completions/kubectl_complete-kpf") && h.Mode&0o111 == 0 {
			t.Errorf("%s: %s is not executable (mode %o)", name, h.Name, h.Mode)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = b
	}
	return files
}

// checkBinary checks that bin is an executable for goos/goarch, built
// without cgo, with -trimpath, stamped with the release's version and
// commit; and runs it when it is for this machine.
func checkBinary(t *testing.T, bin []byte, goos, goarch string, meta metadata) {
	t.Helper()
	r := bytes.NewReader(bin)
	switch goos {
	case "linux":
		f, err := elf.NewFile(r)
		if err != nil {
			t.Fatalf("not an ELF file: %v", err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
		if f.Machine != want {
			t.Errorf("ELF machine %v, want %v", f.Machine, want)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the Linux binary has a dynamic loader (PT_INTERP): it is not static")
			}
		}
	case "darwin":
		f, err := macho.NewFile(r)
		if err != nil {
			t.Fatalf("not a Mach-O file: %v", err)
		}
		want := map[string]macho.Cpu{"amd64": macho.CpuAmd64, "arm64": macho.CpuArm64}[goarch]
		if f.Cpu != want || f.Type != macho.TypeExec {
			t.Errorf("Mach-O cpu %v type %v, want %v executable", f.Cpu, f.Type, want)
		}
	case "windows":
		f, err := pe.NewFile(r)
		if err != nil {
			t.Fatalf("not a PE file: %v", err)
		}
		want := map[string]uint16{"amd64": pe.IMAGE_FILE_MACHINE_AMD64, "arm64": pe.IMAGE_FILE_MACHINE_ARM64}[goarch]
		if f.Machine != want {
			t.Errorf("PE machine %#x, want %#x", f.Machine, want)
		}
		if oh, ok := f.OptionalHeader.(*pe.OptionalHeader64); !ok || oh.Subsystem != pe.IMAGE_SUBSYSTEM_WINDOWS_CUI {
			t.Error("the Windows binary is not a 64-bit console program")
		}
	}

	bi, err := buildinfo.Read(r)
	if err != nil {
		t.Fatalf("read Go build info: %v", err)
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	for key, want := range map[string]string{"GOOS": goos, "GOARCH": goarch, "CGO_ENABLED": "0", "-trimpath": "true"} {
		if settings[key] != want {
			t.Errorf("built with %s=%q, want %q", key, settings[key], want)
		}
	}
	// With -trimpath, Go does not record -ldflags in the build info; the
	// strings they set are in the binary's data.
	for _, want := range []string{meta.Version, meta.Commit} {
		if !bytes.Contains(bin, []byte(want)) {
			t.Errorf("the binary does not hold %q: -ldflags -X did not stamp it", want)
		}
	}

	if goos != runtime.GOOS || goarch != runtime.GOARCH {
		return
	}
	path := filepath.Join(t.TempDir(), "kpf")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(path, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kpf version -o json: %v", err)
	}
	var v struct{ Version, Commit, Platform string }
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("kpf version -o json: %v\n%s", err, out)
	}
	if v.Version != meta.Version || v.Commit != meta.Commit || v.Platform != goos+"/"+goarch {
		t.Errorf("kpf version says %+v, want version %s, commit %s, platform %s/%s", v, meta.Version, meta.Commit, goos, goarch)
	}
}

// TestKrewManifest checks the kubectl plugin manifest: every platform, with
// the archive's checksum, running kpf (krew links it as kubectl-kpf).
func TestKrewManifest(t *testing.T) {
	dist := distDir(t)
	fullSnapshot(t)
	meta := readMetadata(t, dist)
	sums := checksums(t, dist)
	b, err := os.ReadFile(filepath.Join(dist, "krew", "kpf.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(b)
	for _, want := range []string{"kind: Plugin", "name: kpf", "version: v" + strings.TrimPrefix(meta.Version, "v")} {
		if !strings.Contains(manifest, want) {
			t.Errorf("krew manifest lacks %q:\n%s", want, manifest)
		}
	}
	for _, p := range platforms {
		name := archiveName(meta.Version, p.goos, p.goarch)
		if !strings.Contains(manifest, name) || !strings.Contains(manifest, sums[name]) {
			t.Errorf("krew manifest does not list %s with its checksum", name)
		}
	}
	if !strings.Contains(manifest, "bin: kpf.exe") || !strings.Contains(manifest, "bin: kpf\n") {
		t.Errorf("krew manifest does not run kpf and kpf.exe:\n%s", manifest)
	}
}

// TestHomebrewCask checks the cask: the macOS and Linux archives with
// their checksums, and the completions.
func TestHomebrewCask(t *testing.T) {
	dist := distDir(t)
	fullSnapshot(t)
	meta := readMetadata(t, dist)
	sums := checksums(t, dist)
	b, err := os.ReadFile(filepath.Join(dist, "homebrew", "Casks", "kpf.rb"))
	if err != nil {
		t.Fatal(err)
	}
	cask := string(b)
	for _, p := range platforms {
		name := archiveName(meta.Version, p.goos, p.goarch)
		// The cask names archives as kpf_#{version}_OS_ARCH.tar.gz.
		listed := strings.Contains(cask, fmt.Sprintf(`version "%s"`, meta.Version)) &&
			strings.Contains(cask, fmt.Sprintf("_%s_%s.tar.gz", p.goos, p.goarch)) && strings.Contains(cask, sums[name])
		if listed != (p.goos != "windows") {
			t.Errorf("cask lists %s: %v", name, listed)
		}
	}
	for _, want := range []string{`binary "kpf"`, "completions/kpf.bash", "completions/kpf.zsh", "completions/kpf.fish", "com.apple.quarantine"} {
		if !strings.Contains(cask, want) {
			t.Errorf("cask lacks %q:\n%s", want, cask)
		}
	}
}
