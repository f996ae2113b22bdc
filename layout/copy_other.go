//go:build !linux && !freebsd

package layout

import "os"

// defaultCopyMethods: no in-kernel copy here; PutFile copies in user space.
var defaultCopyMethods []copyMethod

// copyFileRange has no kernel copy to offer here.
func copyFileRange(dst, src *os.File, size int64) (bool, error) { return false, nil }
