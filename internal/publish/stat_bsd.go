//go:build freebsd || darwin || netbsd

package publish

import (
	"io/fs"
	"syscall"
)

// statKey returns the quick-check key of fi: size, mtime, inode, ctime.
func statKey(fi fs.FileInfo) fileKey {
	k := fileKey{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.Ino = uint64(st.Ino)
		k.Ctime = int64(st.Ctimespec.Sec)*1e9 + int64(st.Ctimespec.Nsec)
	}
	return k
}
