//go:build linux

package layout

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// defaultCopyMethods on Linux: a clone (FICLONE: shares the source's blocks
// copy-on-write on XFS, btrfs, bcachefs; no data copied), else PutFile copies
// in user space. copy_file_range is not in the list: where it cannot clone
// it copies in the kernel, and that copy plus its verification measured
// slower than one user-space pass that hashes as it copies (see
// BenchmarkCopyVerify and the layout report).
var defaultCopyMethods = []copyMethod{cloneFile}

// cloneFile makes dst share src's blocks (ioctl FICLONE), then re-reads dst
// to verify it.
func cloneFile(dst, src *os.File, d digest.SHA256, size int64) (bool, error) {
	var cerr error
	err := withFds(dst, src, func(dfd, sfd int) {
		for {
			cerr = unix.IoctlFileClone(dfd, sfd)
			if !errors.Is(cerr, unix.EINTR) {
				return
			}
		}
	})
	if err != nil {
		return false, nil
	}
	if cerr != nil {
		if fallback(cerr) {
			return false, nil
		}
		return false, &os.PathError{Op: "ioctl FICLONE", Path: src.Name(), Err: cerr}
	}
	return true, verifyWritten(dst, d, size)
}

func sysCopyFileRange(sfd int, soff *int64, dfd int, doff *int64, n int) (int, error) {
	return unix.CopyFileRange(sfd, soff, dfd, doff, n, 0)
}
