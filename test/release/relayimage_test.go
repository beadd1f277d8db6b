package release

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// ociDescriptor is the part of an OCI descriptor the checks use.
type ociDescriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform"`
}

// blob reads a blob of the OCI layout at dir and checks its digest.
func blob(t *testing.T, dir, digest string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); "sha256:"+hex.EncodeToString(sum[:]) != digest {
		t.Fatalf("blob %s does not have its digest", digest)
	}
	return b
}

// TestRelayImage checks the relay image the release builds before
// GoReleaser runs (tools/relayimage): an OCI layout whose index digest is
// what build/relay-image/digest records and what the release's kpf
// deploys; one image per Linux platform, from scratch, holding only
// /kpf-relay, run as 65532; and, on linux/amd64, that the program in it
// runs.
func TestRelayImage(t *testing.T) {
	dist := distDir(t)
	dir := filepath.Join(filepath.Dir(dist), "build", "relay-image")
	digest, err := os.ReadFile(filepath.Join(dir, "digest"))
	if err != nil {
		t.Fatalf("the release built no relay image: %v", err)
	}
	oci := filepath.Join(dir, "oci")
	index, err := os.ReadFile(filepath.Join(oci, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(index); "sha256:"+hex.EncodeToString(sum[:]) != string(digest) {
		t.Fatalf("index.json's digest is not the recorded %s", digest)
	}
	ref, _ := os.ReadFile(filepath.Join(dir, "image.txt"))
	if !strings.HasPrefix(string(ref), "ghcr.io/kpf-dev/kpf-relay:") || !strings.HasSuffix(strings.TrimSpace(string(ref)), "@"+string(digest)) {
		t.Errorf("image.txt = %q, want the repository pinned to %s", ref, digest)
	}

	// The release's kpf deploys exactly this image.
	meta := readMetadata(t, dist)
	path := filepath.Join(t.TempDir(), "kpf")
	os.WriteFile(path, binaryFor(t, dist, runtime.GOOS, runtime.GOARCH), 0o755)
	out, err := exec.Command(path, "version", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kpf version -o json: %v", err)
	}
	var v struct{ RelayImage string }
	json.Unmarshal(out, &v)
	if want := "ghcr.io/kpf-dev/kpf-relay:" + meta.Version + "@" + string(digest); v.RelayImage != strings.ReplaceAll(want, "+", "-") {
		t.Errorf("kpf deploys %q, want %q", v.RelayImage, want)
	}

	var idx struct{ Manifests []ociDescriptor }
	json.Unmarshal(index, &idx)
	arches := map[string]bool{}
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.OS != "linux" {
			t.Fatalf("index entry %+v is not a linux image", m)
		}
		arches[m.Platform.Architecture] = true
		checkRelayImage(t, oci, m)
	}
	if !arches["amd64"] || !arches["arm64"] || len(arches) != 2 {
		t.Errorf("relay image platforms %v, want linux/amd64 and linux/arm64", arches)
	}
}

// checkRelayImage checks one platform's image and, on this machine's
// platform, runs its program.
func checkRelayImage(t *testing.T, oci string, m ociDescriptor) {
	t.Helper()
	var manifest struct {
		Config ociDescriptor
		Layers []ociDescriptor
	}
	json.Unmarshal(blob(t, oci, m.Digest), &manifest)
	var config struct {
		Architecture, OS string
		Config           struct {
			User       string
			Entrypoint []string
		}
	}
	json.Unmarshal(blob(t, oci, manifest.Config.Digest), &config)
	arch := m.Platform.Architecture
	if config.OS != "linux" || config.Architecture != arch || config.Config.User != "65532:65532" ||
		len(config.Config.Entrypoint) != 1 || config.Config.Entrypoint[0] != "/kpf-relay" {
		t.Errorf("%s image config %+v: want linux/%s, user 65532:65532, entrypoint /kpf-relay", arch, config, arch)
	}
	if len(manifest.Layers) != 1 {
		t.Fatalf("%s image has %d layers, want one (no base image)", arch, len(manifest.Layers))
	}
	zr, err := gzip.NewReader(strings.NewReader(string(blob(t, oci, manifest.Layers[0].Digest))))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	var program []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == "kpf-relay" {
			program, _ = io.ReadAll(tr)
		}
	}
	if len(names) != 1 || program == nil {
		t.Fatalf("%s layer holds %v, want kpf-relay only", arch, names)
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != arch {
		return
	}
	path := filepath.Join(t.TempDir(), "kpf-relay")
	os.WriteFile(path, program, 0o755)
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kpf-relay ") {
		t.Errorf("the image's kpf-relay --version: %q, %v", out, err)
	}
}
