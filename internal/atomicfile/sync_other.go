//go:build !unix

package atomicfile

import "os"

// syncDir is a no-op where directories cannot be opened for fsync (Windows).
func syncDir(d *os.File) error { return nil }
