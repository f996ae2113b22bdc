//go:build linux || freebsd

package layout

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// copyFileRange copies src to dst with copy_file_range(2) (which clones
// where the filesystem can, and copies in the kernel otherwise), then
// re-reads dst to verify it: that checks what was really written, also if
// the source changed meanwhile, and the pages are in the cache.
func copyFileRange(dst, src *os.File, d digest.SHA256, size int64) (bool, error) {
	var done int64
	want := size + 1 // one more, so that a longer source shows
	for done < want {
		n, err := cfrRetry(dst, src, nil, nil, int(min(want-done, 1<<30)))
		if err != nil {
			if done == 0 && fallback(err) {
				return false, nil
			}
			return false, &os.PathError{Op: "copy_file_range", Path: src.Name(), Err: err}
		}
		if n == 0 {
			break // end of src
		}
		done += int64(n)
	}
	if done == 0 && size > 0 {
		// Some files (procfs, FUSE) report a size but copy nothing: let
		// the next method try.
		return false, nil
	}
	return true, verifyWritten(dst, d, size)
}

// copyFileRangeHashing copies src to dst with copy_file_range(2), chunk by
// chunk, hashing each chunk of src in user space just before the kernel
// copies it (the pages are then hot), instead of re-reading dst afterwards.
func copyFileRangeHashing(dst, src *os.File, d digest.SHA256, size int64) (bool, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	h := digest.New()
	var off int64
	for off < size {
		n, err := src.ReadAt((*buf)[:min(int64(len(*buf)), size-off)], off)
		if n == 0 && err == io.EOF {
			return false, &digest.SizeError{Want: size, Got: off}
		}
		if err != nil && err != io.EOF {
			return false, err
		}
		h.Write((*buf)[:n])
		for copied := 0; copied < n; {
			soff, doff := off+int64(copied), off+int64(copied)
			c, err := cfrRetry(dst, src, &soff, &doff, n-copied)
			if err != nil {
				if off == 0 && copied == 0 && fallback(err) {
					return false, nil
				}
				return false, &os.PathError{Op: "copy_file_range", Path: src.Name(), Err: err}
			}
			if c == 0 {
				return false, &digest.SizeError{Want: size, Got: off + int64(copied)}
			}
			copied += c
		}
		off += int64(n)
	}
	var one [1]byte
	if n, _ := src.ReadAt(one[:], size); n > 0 {
		return false, &digest.SizeError{Want: size, Got: size + 1}
	}
	if got := digest.FromHash(h); got != d {
		return false, &digest.MismatchError{Want: d, Got: got}
	}
	return true, nil
}

// cfrRetry is copy_file_range(2) on dst and src, retried on EINTR. Nil
// offsets use and advance the files' own offsets.
func cfrRetry(dst, src *os.File, soff, doff *int64, n int) (int, error) {
	var c int
	var cerr error
	err := withFds(dst, src, func(dfd, sfd int) {
		for {
			c, cerr = sysCopyFileRange(sfd, soff, dfd, doff, n)
			if !errors.Is(cerr, unix.EINTR) {
				return
			}
		}
	})
	if cerr == nil {
		cerr = err
	}
	return c, cerr
}

// fallback reports whether a kernel copy failed because it cannot copy
// these files at all (old kernel, across filesystems, special files, no
// clone support), as opposed to an I/O error to report.
func fallback(err error) bool {
	return errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) ||
		errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBADF) ||
		errors.Is(err, unix.ENOTTY)
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
