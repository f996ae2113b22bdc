//go:build linux

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
		k.Ctime = st.Ctim.Sec*1e9 + st.Ctim.Nsec
	}
	return k
}
