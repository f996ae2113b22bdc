//go:build !linux && !freebsd && !darwin && !netbsd

package publish

import "io/fs"

// statKey returns the quick-check key of fi. Without inode and ctime here,
// the key is size and mtime only.
func statKey(fi fs.FileInfo) fileKey {
	return fileKey{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
}
