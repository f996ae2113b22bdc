//go:build freebsd

package layout

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// defaultCopyMethods on FreeBSD: copy_file_range(2), the only call that
// clones blocks (ZFS block cloning) and otherwise copies in the kernel.
var defaultCopyMethods = []copyMethod{copyFileRange}

// sysCopyFileRangeTrap is copy_file_range(2)'s number in FreeBSD's
// sys/syscall.h (since 13.0); golang.org/x/sys/unix has no wrapper for it.
const sysCopyFileRangeTrap = 569

func sysCopyFileRange(sfd int, soff *int64, dfd int, doff *int64, n int) (int, error) {
	r, _, errno := unix.Syscall6(sysCopyFileRangeTrap, uintptr(sfd), uintptr(unsafe.Pointer(soff)),
		uintptr(dfd), uintptr(unsafe.Pointer(doff)), uintptr(n), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
