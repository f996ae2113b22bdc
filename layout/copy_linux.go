//go:build linux

package layout

import (
	"os"

	"golang.org/x/sys/unix"
)

// copyFileRange copies up to size bytes from src to dst in the kernel. It
// reports false (and copied nothing) if the kernel cannot do it for these
// files, so the caller falls back to a user-space copy.
func copyFileRange(dst, src *os.File, size int64) (bool, error) {
	return copyFileRangeLoop(dst, src, size, func(dfd, sfd int, n int) (int, error) {
		return unix.CopyFileRange(sfd, nil, dfd, nil, n, 0)
	})
}
