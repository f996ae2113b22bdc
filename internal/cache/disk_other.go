//go:build !linux

package cache

import "os"

// Without syncfs(2), each file and each directory is fsynced: the files by
// their fill goroutines, in parallel, the directories once per batch.

// flushFile makes a prepared fill's files durable.
func (c *Cache) flushFile(data, meta *os.File) error {
	return fsyncEach([]*os.File{data, meta})
}

// syncFiles does nothing: flushFile did it.
func (c *Cache) syncFiles(files []*os.File) error { return nil }

// syncDirs makes the renames into dirs durable.
func (c *Cache) syncDirs(dirs []string) error { return syncEachDir(dirs) }
