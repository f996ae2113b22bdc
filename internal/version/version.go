// Package version reports what build of pkgcdn is running: the version,
// commit and build date stamped by the Makefile's -ldflags, falling back to
// what the Go toolchain recorded in the binary (go install, go run).
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set by -ldflags "-X github.com/pkgcdn/pkgcdn/internal/version.Version=…".
var (
	Version = "" // release version, e.g. v0.3.0; if empty, "devel"
	Commit  = "" // git commit; if empty, read from the binary's VCS stamp
	Date    = "" // build date, RFC 3339; if empty, the commit time
)

// String returns "VERSION (commit COMMIT, built DATE, GOVERSION GOOS/GOARCH)".
func String() string {
	v, c, d := Version, Commit, Date
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.time" && d == "":
				d = s.Value
			case s.Key == "vcs.modified" && s.Value == "true" && Commit == "":
				c += "-dirty"
			}
		}
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
	}
	if v == "" {
		v = "devel"
	}
	if c == "" {
		c = "unknown"
	}
	if d == "" {
		d = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, built %s, %s %s/%s)", v, c, d, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
