// Command relayimage builds the image of kpf's relay (cmd/kpf-relay)
// without Docker and without a base image: for linux/amd64 and
// linux/arm64 it builds the static kpf-relay binary as the release builds
// kpf (CGO off, -trimpath, the same version stamps) and makes a one-layer
// image from scratch holding only /kpf-relay, run as user 65532; the two
// images go into one multi-platform index, written as an OCI image layout.
// Everything is stamped with the commit's time, so the same commit gives
// the same digest on any machine. The release pins kpf to that digest.
//
// GoReleaser runs it as a before hook (see .goreleaser.yaml); by hand,
// from tools/:
//
//	go run ./relayimage -root .. -out ../build/relay-image -version 1.2.3 -commit HASH -date 2026-12-07T00:00:00Z
//
// It writes, in -out: oci/ (the layout), kpf-relay-image.tar (the layout
// as one file, for the release), digest (the index digest,
// "sha256:..."), and image.txt (the reference kpf deploys,
// ghcr.io/kpf-dev/kpf-relay:VERSION@DIGEST). Publishing it to a registry
// is not its job.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// repository is where the image is published (buildinfo.RelayRepository).
const repository = "ghcr.io/kpf-dev/kpf-relay"

// user is the relay's user and group, as kpf's relay pods run it.
const user = "65532:65532"

var platforms = []string{"amd64", "arm64"}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "relayimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("relayimage", flag.ContinueOnError)
	root := fs.String("root", "..", "the kpf repository")
	out := fs.String("out", "../build/relay-image", "output directory (replaced)")
	version := fs.String("version", "", "version stamped into kpf-relay and used as the tag")
	commit := fs.String("commit", "", "commit stamped into kpf-relay")
	date := fs.String("date", "", "commit time, RFC 3339: the time of every file and of the image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	created, err := time.Parse(time.RFC3339, *date)
	if err != nil {
		return fmt.Errorf("-date: %w", err)
	}
	if *version == "" {
		return fmt.Errorf("-version is required")
	}
	if *out, err = filepath.Abs(*out); err != nil {
		return err
	}
	if err := os.RemoveAll(*out); err != nil {
		return err
	}
	bin := filepath.Join(*out, "bin")
	idx := v1.ImageIndex(empty.Index)
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	for _, arch := range platforms {
		path := filepath.Join(bin, arch, "kpf-relay")
		if err := buildRelay(*root, path, arch, *version, *commit, *date); err != nil {
			return err
		}
		img, err := image(path, arch, created)
		if err != nil {
			return fmt.Errorf("image for %s: %w", arch, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	if err := os.RemoveAll(bin); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	oci := filepath.Join(*out, "oci")
	if _, err := layout.Write(oci, idx); err != nil {
		return fmt.Errorf("write the OCI layout: %w", err)
	}
	if err := tarDir(oci, filepath.Join(*out, "kpf-relay-image.tar"), created); err != nil {
		return err
	}
	tag := strings.NewReplacer("+", "-").Replace(*version)
	ref := repository + ":" + tag + "@" + digest.String()
	if err := os.WriteFile(filepath.Join(*out, "digest"), []byte(digest.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "image.txt"), []byte(ref+"\n"), 0o644); err != nil {
		return err
	}
	fmt.Println(ref)
	return nil
}

// buildRelay builds kpf-relay for linux/arch into path, stamped as the
// release stamps kpf.
func buildRelay(root, path, arch, version, commit, date string) error {
	pkg := "github.com/kpf-dev/kpf/internal/buildinfo"
	ldflags := fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s -X %s.date=%s", pkg, version, pkg, commit, pkg, date)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", path, "./cmd/kpf-relay")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build kpf-relay for linux/%s: %v\n%s", arch, err, out)
	}
	return nil
}

// image is one platform's image: one layer with /kpf-relay, the
// entrypoint, run as user.
func image(bin, arch string, created time.Time) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	hdr := &tar.Header{Name: "kpf-relay", Mode: 0o755, Size: int64(len(data)), ModTime: created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: created}, CreatedBy: "kpf relayimage: /kpf-relay"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{"/kpf-relay"}
	cf.Config.User = user
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source":   "https://github.com/kpf-dev/kpf",
		"org.opencontainers.image.title":    "kpf-relay",
		"org.opencontainers.image.licenses": "Apache-2.0",
	}
	return mutate.ConfigFile(img, cf)
}

// tarDir writes dir as one tar file, its entries sorted and stamped with
// t, so that the same layout gives the same file.
func tarDir(dir, dst string, t time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		info, err := os.Stat(p)
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: t, Mode: 0o644, Format: tar.FormatPAX}
		if info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
