//go:build !linux && !freebsd && !darwin && !netbsd

package layout

import (
	"io/fs"
	"time"
)

// changeTime returns fi's mtime where the ctime is not known.
func changeTime(fi fs.FileInfo) time.Time { return fi.ModTime() }
