//go:build linux || freebsd

package layout

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// copyFileRangeLoop drives one copy_file_range implementation over size
// bytes (plus one, to notice a source longer than announced).
func copyFileRangeLoop(dst, src *os.File, size int64, cfr func(dfd, sfd int, n int) (int, error)) (bool, error) {
	var done int64
	want := size + 1
	for done < want {
		chunk := int(min(want-done, 1<<30))
		var n int
		var cerr error
		err := withFds(dst, src, func(dfd, sfd int) {
			for {
				n, cerr = cfr(dfd, sfd, chunk)
				if !errors.Is(cerr, unix.EINTR) {
					return
				}
			}
		})
		if cerr == nil {
			cerr = err
		}
		if cerr != nil {
			if done == 0 && fallback(cerr) {
				return false, nil
			}
			return false, &os.PathError{Op: "copy_file_range", Path: src.Name(), Err: cerr}
		}
		if n == 0 {
			break // end of src
		}
		done += int64(n)
	}
	if done == 0 && size > 0 {
		// Some files (procfs, FUSE) report size but copy nothing: let
		// user space try.
		return false, nil
	}
	return true, nil
}

// fallback reports whether copy_file_range failed because it cannot copy
// these files at all (old kernel, across filesystems, special files), as
// opposed to an I/O error to report.
func fallback(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBADF)
}

// withFds runs f with the descriptors of dst and src, kept open meanwhile.
func withFds(dst, src *os.File, f func(dfd, sfd int)) error {
	sconn, err := src.SyscallConn()
	if err != nil {
		return err
	}
	dconn, err := dst.SyscallConn()
	if err != nil {
		return err
	}
	var inner error
	err = sconn.Control(func(sfd uintptr) {
		inner = dconn.Control(func(dfd uintptr) { f(int(dfd), int(sfd)) })
	})
	if err == nil {
		err = inner
	}
	return err
}
