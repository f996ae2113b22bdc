//go:build !unix

package layout

import (
	"io/fs"
	"os"
)

// rawFile is an *os.File where there is no cheaper way to open files.
type rawFile struct{ *os.File }

// openRead opens path read-only.
func openRead(path string) (*rawFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &rawFile{f}, nil
}

// createExcl creates path, which must not exist, for writing, with mode
// perm (less the umask).
func createExcl(path string, perm uint32) (*rawFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fs.FileMode(perm))
	if err != nil {
		return nil, err
	}
	return &rawFile{f}, nil
}

// writeAround does nothing here: writes go through the page cache.
func (f *rawFile) writeAround(int64) {}
