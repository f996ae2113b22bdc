//go:build unix

package origin

import (
	"os"
	"syscall"
)

// openFile opens a file for reading with one open(2) and one fcntl(2).
// os.Open on Linux also tries to register a regular file with the network
// poller (fcntl, fcntl, epoll_ctl failing with EPERM, fcntl, fcntl): four
// system calls per request for nothing, on the hottest path.
func openFile(path string) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}
