package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestString(t *testing.T) {
	const full = "9bf5bb1c0e3a4f1d2b7e6c5a4f3e2d1c0b9a8f7e"
	plat := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	vcs := func(modified string) *debug.BuildInfo {
		return &debug.BuildInfo{Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: full},
			{Key: "vcs.time", Value: "2026-12-06T19:55:08Z"},
			{Key: "vcs.modified", Value: modified},
		}}
	}
	withMain := func(bi *debug.BuildInfo, v string) *debug.BuildInfo { bi.Main.Version = v; return bi }
	tests := []struct {
		name                  string
		version, commit, date string
		bi                    *debug.BuildInfo
		want                  string
	}{
		{"release build", "v1.2.3", full, "2026-12-06T20:00:00Z", withMain(vcs("false"), "(devel)"),
			"kpf v1.2.3 (commit 9bf5bb1c0e3a, 2026-12-06T20:00:00Z)"},
		{"release build ignores the toolchain's modified flag", "v1.2.3", full, "2026-12-06T20:00:00Z", vcs("true"),
			"kpf v1.2.3 (commit 9bf5bb1c0e3a, 2026-12-06T20:00:00Z)"},
		{"go install module@version", "", "", "", withMain(&debug.BuildInfo{}, "v1.2.3"),
			"kpf v1.2.3"},
		{"go build in a checkout: pseudo-version says it all", "", "", "",
			withMain(vcs("true"), "v0.0.0-20261206195508-9bf5bb1c0e3a+dirty"),
			"kpf v0.0.0-20261206195508-9bf5bb1c0e3a+dirty"},
		{"go build without a module version", "", "", "", withMain(vcs("true"), "(devel)"),
			"kpf (devel) (commit 9bf5bb1c0e3a, 2026-12-06T19:55:08Z, modified)"},
		{"no build info at all", "", "", "", nil, "kpf (devel)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := get(tt.version, tt.commit, tt.date, tt.bi)
			if tt.bi != nil {
				// The toolchain's Go version is whatever built the
				// test; compare the rest.
				i.GoVersion = runtime.Version()
			}
			if got := i.String(); got != tt.want+plat {
				t.Errorf("String() = %q\nwant      %q", got, tt.want+plat)
			}
		})
	}
}

func TestGetFillsEveryField(t *testing.T) {
	i := Get()
	if i.Version == "" || i.GoVersion == "" || i.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v", i)
	}
}

func TestRelayImage(t *testing.T) {
	for _, tc := range []struct{ version, digest, want string }{
		{"v1.2.3", "sha256:abc", "ghcr.io/kpf-dev/kpf-relay:v1.2.3@sha256:abc"},
		{"v1.2.3", "", "ghcr.io/kpf-dev/kpf-relay:v1.2.3"},
		{"(devel)", "", "ghcr.io/kpf-dev/kpf-relay:dev"},
		{"", "", "ghcr.io/kpf-dev/kpf-relay:dev"},
		{"v0.0.0-20261206195508-9bf5bb1c0e3a+dirty", "", "ghcr.io/kpf-dev/kpf-relay:v0.0.0-20261206195508-9bf5bb1c0e3a-dirty"},
	} {
		if got := relayImage(tc.version, tc.digest); got != tc.want {
			t.Errorf("relayImage(%q, %q) = %q, want %q", tc.version, tc.digest, got, tc.want)
		}
	}
}
