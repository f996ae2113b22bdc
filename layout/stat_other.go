//go:build !unix

package layout

import "io/fs"

// linkCount returns 0 ("unknown") where the system does not tell: GC then
// never collects an object.
func linkCount(fi fs.FileInfo) uint64 { return 0 }

// inode returns 0 ("unknown") where the system does not tell.
func inode(fi fs.FileInfo) uint64 { return 0 }
