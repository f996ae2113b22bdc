//go:build freebsd

package layout

import (
	"os"

	"golang.org/x/sys/unix"
)

// defaultCopyMethods on FreeBSD: copy_file_range(2), the only call that
// clones blocks (ZFS block cloning) and otherwise copies in the kernel.
var defaultCopyMethods = []copyMethod{copyFileRange}

// sysCopyFileRange is copy_file_range(2)'s number in FreeBSD's syscall.h
// (since 13.0); golang.org/x/sys/unix has no wrapper for FreeBSD.
const sysCopyFileRange = 569

// copyFileRange copies src to dst with copy_file_range(2).
func copyFileRange(dst, src *os.File, size int64) (bool, error) {
	return copyFileRangeLoop(dst, src, size, func(dfd, sfd int, n int) (int, error) {
		// Nil offsets: both files' own offsets are used and advanced.
		r, _, errno := unix.Syscall6(sysCopyFileRange, uintptr(sfd), 0, uintptr(dfd), 0, uintptr(n), 0)
		if errno != 0 {
			return 0, errno
		}
		return int(r), nil
	})
}
