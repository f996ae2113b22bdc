package layout

import "github.com/pkgcdn/pkgcdn/internal/atomicfile"

// faultHook lets crash-safety tests fail or kill the process at a named step
// of PutObject, Commit and GC (see the steps passed to it). Production code
// leaves it returning nil.
var faultHook = func(step string) error { return nil }

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

func atomicTemp(name string) bool { return atomicfile.IsTemp(name) }
