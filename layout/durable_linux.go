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

// startWriteback asks the kernel to start writing f's dirty pages to disk
// now, without waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE). It
// makes nothing durable: Commit's syncfs still does. It only lets the disk
// work while the publisher still reads and hashes, instead of all of it
// waiting for that syncfs. Errors are dropped: the syncfs reports them.
func startWriteback(f *rawFile) {
	_ = unix.SyncFileRange(f.fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE) // a hint; see above
}
