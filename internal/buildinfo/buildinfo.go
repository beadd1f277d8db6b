// Package buildinfo tells which kpf this is: its version, the commit it was
// built from, when, and with which Go for which platform.
//
// Release builds set version, commit and date with the linker, and the
// digest of the relay image built from the same commit:
//
//	-X github.com/kpf-dev/kpf/internal/buildinfo.version=v1.2.3
//	-X github.com/kpf-dev/kpf/internal/buildinfo.commit=<full hash>
//	-X github.com/kpf-dev/kpf/internal/buildinfo.date=<RFC 3339>
//	-X github.com/kpf-dev/kpf/internal/buildinfo.relayDigest=sha256:<hex>
//
// Other builds (go install, go build in a checkout) fall back to what the
// Go toolchain stamps into every binary: the module version and the VCS
// revision, time and modified flag.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set by the release build's -ldflags -X; empty otherwise.
var (
	version string
	commit  string
	date    string
)

// Info describes one build of kpf. Empty fields are unknown.
type Info struct {
	Version   string `json:"version"`   // e.g. v1.2.3, or a Go pseudo-version, or (devel)
	Commit    string `json:"commit"`    // full VCS revision
	Date      string `json:"date"`      // commit or build time, RFC 3339
	Modified  bool   `json:"modified"`  // built from a tree with uncommitted changes
	GoVersion string `json:"goVersion"` // e.g. go1.26.8
	Platform  string `json:"platform"`  // GOOS/GOARCH, e.g. darwin/arm64
	// RelayImage is the relay image kpf deploys (see RelayImage).
	RelayImage string `json:"relayImage"`
}

// Get returns this binary's build information.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	i := get(version, commit, date, bi)
	i.RelayImage = relayImage(i.Version, relayDigest)
	return i
}

// get merges the linker-set values (which win) with the toolchain's.
func get(version, commit, date string, bi *debug.BuildInfo) Info {
	i := Info{Version: version, Commit: commit, Date: date, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if i.Version == "" {
			i.Version = "(devel)"
		}
		return i
	}
	if i.Version == "" {
		i.Version = bi.Main.Version
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	if bi.GoVersion != "" {
		i.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if i.Commit == "" {
				i.Commit = s.Value
			}
		case "vcs.time":
			if i.Date == "" {
				i.Date = s.Value
			}
		case "vcs.modified":
			if commit == "" {
				i.Modified = s.Value == "true"
			}
		}
	}
	return i
}

// shortCommit is the length of the abbreviated commit hash that String
// prints, as in a Go pseudo-version.
const shortCommit = 12

// String is the one line kpf version prints, each fact once: a Go
// pseudo-version (v0.0.0-20261206195508-9bf5bb1c0e3a+dirty) already holds
// the commit, its time and whether the tree was modified, so those are not
// repeated after it.
//
//	kpf v1.2.3 (commit 9bf5bb1c0e3a, 2026-12-06T19:55:08Z) go1.26.8 darwin/arm64
func (i Info) String() string {
	var details []string
	short := i.Commit
	if len(short) > shortCommit {
		short = short[:shortCommit]
	}
	inVersion := short != "" && strings.Contains(i.Version, short)
	if short != "" && !inVersion {
		details = append(details, "commit "+short)
	}
	if i.Date != "" && !inVersion {
		details = append(details, i.Date)
	}
	if i.Modified && !strings.HasSuffix(i.Version, "+dirty") {
		details = append(details, "modified")
	}
	s := "kpf " + i.Version
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	return fmt.Sprintf("%s %s %s", s, i.GoVersion, i.Platform)
}

// RelayRepository is the image repository of kpf's relay (cmd/kpf-relay).
const RelayRepository = "ghcr.io/kpf-dev/kpf-relay"

// relayDigest is set by the release build's -ldflags -X to the digest
// ("sha256:...") of the relay image built from the same commit.
var relayDigest string

// RelayImage is the relay image of this kpf: the repository, tagged with
// this build's version (as an image tag can spell it; "dev" for a build
// without one) and, in a release build, pinned by digest, so that what kpf
// deploys is exactly the relay built with it.
func RelayImage() string {
	return Get().RelayImage
}

func relayImage(version, digest string) string {
	tag := "dev"
	if version != "" && version != "(devel)" {
		b := []byte(version)
		for i, c := range b {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
				b[i] = '-'
			}
		}
		tag = string(b)
		if len(tag) > 128 {
			tag = tag[:128]
		}
	}
	img := RelayRepository + ":" + tag
	if digest != "" {
		img += "@" + digest
	}
	return img
}
