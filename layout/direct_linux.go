//go:build linux

package layout

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// setDirect turns O_DIRECT on or off for f. F_SETFL sets only the status
// flags (O_APPEND, O_NONBLOCK, O_DIRECT...), none of which an object's
// descriptor has besides O_DIRECT, so setting exactly it (or none) is
// safe. A filesystem without direct I/O refuses with EINVAL.
func (f *rawFile) setDirect(on bool) error {
	flags := 0
	if on {
		flags = unix.O_DIRECT
	}
	for {
		_, err := unix.FcntlInt(uintptr(f.fd), unix.F_SETFL, flags)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return &os.PathError{Op: "fcntl O_DIRECT", Path: f.name, Err: err}
		}
		return nil
	}
}
