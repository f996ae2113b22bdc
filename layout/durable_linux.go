//go:build linux

package layout

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// syncfsSupported: Linux has syncfs(2), which writes back and waits for
// every dirty inode of one filesystem (and, since Linux 5.8, reports
// writeback errors): one barrier for a whole batch of objects.
const syncfsSupported = true

// syncfs syncs the filesystem holding dir.
func syncfs(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	for {
		err = unix.Syncfs(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		err = &os.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return errors.Join(err, f.Close())
}
