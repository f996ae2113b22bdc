//go:build freebsd || darwin || netbsd

package layout

import (
	"io/fs"
	"syscall"
	"time"
)

// changeTime returns the inode change time (ctime) of fi, or its mtime if
// unknown. Unlike the mtime, no one can set it back.
func changeTime(fi fs.FileInfo) time.Time {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctimespec.Unix())
	}
	return fi.ModTime()
}
