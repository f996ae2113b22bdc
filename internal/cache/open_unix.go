//go:build unix

package cache

import (
	"os"
	"syscall"
)

// openFile is os.OpenFile for the cache's regular files, without the
// poller: on Linux os.OpenFile also tries to register every file with
// epoll (which refuses regular files) and toggles O_NONBLOCK around that,
// five wasted syscalls per open, one open per fill and per disk hit.
// os.NewFile makes a blocking *os.File, which is what a regular file is.
func openFile(name string, flag int, perm os.FileMode) (*os.File, error) {
	fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
	for err == syscall.EINTR {
		fd, err = syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
