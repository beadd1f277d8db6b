package cli

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

const versionUsage = `Usage:
    kpf version

Prints kpf's version, VCS revision and Go version.
`

func runVersion(_ context.Context, env Env, args []string) int {
	fs := newFlagSet(env, "version", versionUsage)
	if code := parseFlags(fs, args); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(env.Stderr, "kpf version: unexpected argument %q\n", fs.Arg(0))
		return ExitUsage
	}
	version, revision := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = " " + s.Value
			}
		}
	}
	fmt.Fprintf(env.Stdout, "kpf %s%s %s %s/%s\n", version, revision, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return ExitOK
}
