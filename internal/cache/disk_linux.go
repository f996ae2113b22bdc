//go:build linux

package cache

import (
	"bytes"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// On Linux one syncfs(2) makes a whole batch durable: it writes back every
// dirty inode of the file system, then commits the journal and flushes the
// disk's cache once, where an fsync per file (or per directory) would
// commit the journal and flush the disk cache once per call (ext4
// allocates delayed blocks at writeback, so each file has metadata of its
// own to commit; a directory fsync whose changes are already committed still
// flushes the disk cache).
//
// syncfs reports writeback errors only since Linux 5.8, and once per fd:
// c.fs is opened once, by New, so every error since the previous syncfs
// reaches us, perhaps another file's (the batch then fails, which keeps
// nothing and is safe), perhaps a file's of a later batch (so Cache.fsErrors
// counts them, and a fill that was under way then is not kept). On an older
// kernel an EIO could go unseen, and a
// page that never reached the disk be read back stale after a restart; so
// there each file and directory is fsynced instead.

// flushFile makes a prepared fill's files durable where syncfs will not.
func (c *Cache) flushFile(data, meta *os.File) error {
	if c.useSyncfs() {
		return nil // syncFiles covers them
	}
	return fsyncEach([]*os.File{data, meta})
}

// syncFiles makes the bytes of a batch's files (data, and the Metas beside
// them in tmp/) durable.
func (c *Cache) syncFiles(files []*os.File) error {
	if !c.useSyncfs() {
		return nil // flushFile did
	}
	return c.syncfs()
}

// syncDirs makes the renames into dirs durable.
func (c *Cache) syncDirs(dirs []string) error {
	if len(dirs) == 0 {
		return nil
	}
	if !c.useSyncfs() {
		return syncEachDir(dirs)
	}
	return c.syncfs()
}

func (c *Cache) useSyncfs() bool { return c.fs != nil && syncfsReportsErrors() }

func (c *Cache) syncfs() error {
	rc, err := c.fs.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		c.fsErrors.Add(1)
		return os.NewSyscallError("syncfs", serr)
	}
	return nil
}

// syncfsReportsErrors reports whether the kernel is Linux 5.8 or later.
var syncfsReportsErrors = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	rel := u.Release[:]
	if i := bytes.IndexByte(rel, 0); i >= 0 {
		rel = rel[:i]
	}
	major, minor, ok := parseRelease(string(rel))
	return ok && (major > 5 || major == 5 && minor >= 8)
})

// parseRelease reads "6.18.44-foo" as 6, 18.
func parseRelease(s string) (major, minor int, ok bool) {
	num := func() (int, bool) {
		i := 0
		for i < len(s) && '0' <= s[i] && s[i] <= '9' {
			i++
		}
		n, err := strconv.Atoi(s[:i])
		s = s[i:]
		return n, err == nil
	}
	if major, ok = num(); !ok || len(s) == 0 || s[0] != '.' {
		return 0, 0, false
	}
	s = s[1:]
	if minor, ok = num(); !ok {
		return 0, 0, false
	}
	return major, minor, true
}
