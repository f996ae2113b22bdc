// Package atomicfile writes files and symlinks so that a reader, a restart or
// a crash at any instant sees either the old content or the complete new one,
// never a partial file: temp file in the same directory, write, fsync, close,
// rename over the target, fsync the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"
)

// tempPrefix starts the name of every temp file this package creates, so a
// collector can recognise leftovers of a crash (see IsTemp).
const tempPrefix = ".tmp-"

// IsTemp reports whether a base name is one of this package's temp files.
func IsTemp(name string) bool {
	return len(name) > len(tempPrefix) && name[:len(tempPrefix)] == tempPrefix
}

// File is a file being written that becomes visible under its final name only
// when Commit succeeds. Abort (or a failed Commit) removes the temp file.
// A File is not safe for concurrent use.
type File struct {
	*os.File
	path string
	perm os.FileMode
	done bool
}

// Create starts writing path. The temp file lives in path's directory, so the
// final rename never crosses a filesystem. perm is applied before the rename.
func Create(path string, perm os.FileMode) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, tempPrefix+base+".*")
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path, perm: perm}, nil
}

// Path returns the final path the file will have after Commit.
func (f *File) Path() string { return f.path }

// Commit makes the written bytes durable and visible under the final name:
// chmod, fsync, close, rename, fsync of the directory. Close comes before the
// rename because some systems refuse to rename an open file. If Commit fails
// before the rename, the temp file is removed and the old file (if any) is
// untouched; if only the final directory fsync fails, the new file is in
// place but may not survive a crash.
func (f *File) Commit() (err error) {
	if f.done {
		return errors.New("atomicfile: commit after commit or abort")
	}
	f.done = true
	defer func() {
		if err != nil {
			_ = f.File.Close() // already failing; the temp file is removed below
			_ = os.Remove(f.File.Name())
		}
	}()
	// Chmod before Sync, so the fsync makes the mode durable with the bytes.
	if err := f.File.Chmod(f.perm); err != nil {
		return err
	}
	if err := FaultHook("sync"); err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	if err := f.File.Close(); err != nil {
		return err
	}
	if err := FaultHook("rename"); err != nil {
		return err
	}
	if err := os.Rename(f.File.Name(), f.path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort discards the file. It is safe to call after Commit (it does nothing),
// so `defer f.Abort()` is the usual cleanup.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	_ = f.File.Close() // nothing to report: the bytes are being thrown away
	_ = os.Remove(f.File.Name())
}

// WriteFile atomically replaces path with data.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// WriteFrom atomically replaces path with everything read from r and returns
// the number of bytes written. If r fails, path is left as it was.
func WriteFrom(path string, r io.Reader, perm os.FileMode) (int64, error) {
	f, err := Create(path, perm)
	if err != nil {
		return 0, err
	}
	defer f.Abort()
	n, err := io.Copy(f, r)
	if err != nil {
		return n, err
	}
	return n, f.Commit()
}

var symlinkSeq atomic.Uint64

// ReplaceSymlink atomically points linkPath at target: it creates a symlink
// under a temp name in the same directory, renames it over linkPath (rename(2)
// replaces the old link in one step, so a reader resolves either the old or
// the new target, never nothing), and fsyncs the directory. If only that
// fsync fails, the link has been replaced but may not survive a crash.
func ReplaceSymlink(target, linkPath string) error {
	dir := filepath.Dir(linkPath)
	// pid, time and a sequence number keep two writers (in this process or
	// another) from ever picking the same temp name.
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(linkPath)+"."+
		strconv.Itoa(os.Getpid())+"-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+
		strconv.FormatUint(symlinkSeq.Add(1), 36))
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := FaultHook("symlink-rename"); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, linkPath); err != nil {
		_ = os.Remove(tmp) // the rename error is the one to report
		return err
	}
	return SyncDir(dir)
}

// SyncDir fsyncs a directory, making the renames and creations inside it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = syncDir(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}

// FaultHook lets crash-safety tests fail or kill the process at a named step
// ("sync", "rename", "symlink-rename"). Production code leaves it returning nil.
var FaultHook = func(step string) error { return nil }
