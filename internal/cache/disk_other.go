//go:build !linux

package cache

import "errors"

// Without syncfs(2), each commit fsyncs its files (in its fill goroutine,
// in parallel with the others), and a checkpoint fsyncs the directories
// touched and the index.

func (c *Cache) useSyncfs() bool { return false }

// barrier makes the renames and unlinks in the fan-out directories dirs,
// and the journal jr, durable.
func (c *Cache) barrier(jr *journal, dirs [256]bool) error {
	return errors.Join(syncEachDir(c.dirPaths(dirs)), jr.sync())
}
