//go:build linux

package cache

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// On Linux one syncfs(2) makes a whole checkpoint durable: it writes back every
// dirty inode of the file system, then commits the journal and flushes the
// disk's cache once, where an fsync per file (or per directory) would
// commit the journal and flush the disk cache once per call (ext4
// allocates delayed blocks at writeback, so each file has metadata of its
// own to commit; a directory fsync whose changes are already committed still
// flushes the disk cache).
//
// syncfs reports writeback errors only since Linux 5.8, and once per fd:
// c.fs is opened once, by New, so every error since the previous syncfs
// reaches us, perhaps another file's (the checkpoint then fails and every
// dirty entry is removed, which is safe), perhaps a file of a fill still
// under way (so Cache.fsErrors counts them, and such a fill is not kept).
// On an older kernel an EIO could go unseen, and a page that never reached
// the disk be read back stale after a restart; so there each commit
// fsyncs its files, and a checkpoint the directories and the index.

// barrier makes everything written so far durable: files, renames and
// unlinks in the fan-out directories dirs, and the journal jr.
func (c *Cache) barrier(jr *journal, dirs [256]bool) error {
	if !c.useSyncfs() {
		// Commits fsynced their files: the directories and the index remain.
		return errors.Join(syncEachDir(c.dirPaths(dirs)), jr.sync())
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
