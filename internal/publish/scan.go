package publish

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
)

// ErrBadSource is wrapped by every error Scan returns for a source tree that
// cannot be published as it is: an invalid name, a symlink leaving the tree,
// a device, socket or fifo, an unreadable file. Nothing has been written when
// it is returned.
var ErrBadSource = errors.New("source tree refused")

// ErrEmptySource means the source tree holds no file: publishing it would
// replace the live set with an empty one, which is never what a build meant.
var ErrEmptySource = errors.New("source tree has no files")

// File is one regular file of a source tree.
type File struct {
	Path   string        // set-relative, slash-separated, relpath.Validate-clean
	Abs    string        // absolute path of the file to read (a symlink's resolved target)
	Size   int64         // bytes, as of the scan
	SHA256 digest.SHA256 // zero until hashed
	key    fileKey       // quick-check key as of the scan
	stored bool          // stored in the target while hashed (HashConfig.store)
	data   []byte        // the bytes hashed, kept for the upload (HashConfig.retain)
}

// fileKey is what rsync's quick check compares: if none of it changed, the
// bytes are taken as unchanged.
type fileKey struct {
	Size  int64
	Mtime int64 // ns since the epoch
	Ino   uint64
	Ctime int64 // ns since the epoch; 0 where unknown
}

// Scan walks dir and returns its regular files sorted by Path.
//
// Refused, with an error wrapping ErrBadSource naming the path: a name that
// fails relpath.Validate (so also anything under .pkgcdn/), a device, socket
// or fifo, a file (access(2)) or directory that cannot be read, and a
// symlink whose target is outside dir, dangling, or a directory.
//
// A symlink to a regular file inside dir is followed: it is published as a
// file of its own with the target's bytes (FreeBSD repositories keep
// Latest/pkg.pkg -> ../All/pkg-2.0.pkg; the object is stored once either
// way). Symlinks to directories are refused, so a walk never loops and never
// publishes one subtree twice. Empty directories are ignored.
func Scan(ctx context.Context, dir string) ([]File, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	// Resolve the root itself, so "inside" is judged on real paths even if
	// SRCDIR is reached through a symlink (/home -> /usr/home on FreeBSD).
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	}
	if fi, err := os.Stat(real); err != nil {
		return nil, fmt.Errorf("scan: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrBadSource, dir)
	}
	var files []File
	err = filepath.WalkDir(real, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSource, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == real {
			return nil
		}
		rel, err := filepath.Rel(real, p)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadSource, err)
		}
		rel = filepath.ToSlash(rel)
		if err := relpath.Validate(rel); err != nil {
			return fmt.Errorf("%w: %v", ErrBadSource, err)
		}
		switch t := d.Type(); {
		case t.IsDir():
			return nil
		case t&fs.ModeSymlink != 0:
			f, err := scanSymlink(real, p, rel)
			if err != nil {
				return err
			}
			files = append(files, f)
			return nil
		case t.IsRegular():
			// Stat later, in parallel: on a tree of small files the
			// walk is bound by these syscalls.
			files = append(files, File{Path: rel, Abs: p, Size: -1})
			return nil
		default:
			return fmt.Errorf("%w: %s: not a regular file (%s)", ErrBadSource, rel, t.Type())
		}
	})
	if err == nil {
		err = statFiles(ctx, files)
	}
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("scan %s: %w", dir, ErrEmptySource)
	}
	// WalkDir visits in lexical order of OS names per directory, which is not
	// the byte order of full slash paths ("a-b" vs "a/b"): sort explicitly.
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files, nil
}

// scanSymlink resolves a symlink at p (rel inside root) and accepts it only
// if it ends at a regular file inside root.
func scanSymlink(root, p, rel string) (File, error) {
	target, err := filepath.EvalSymlinks(p)
	if err != nil {
		return File{}, fmt.Errorf("%w: %s: symlink cannot be resolved: %v", ErrBadSource, rel, err)
	}
	in, err := filepath.Rel(root, target)
	if err != nil || in == ".." || strings.HasPrefix(in, ".."+string(filepath.Separator)) || filepath.IsAbs(in) {
		return File{}, fmt.Errorf("%w: %s: symlink points outside the source tree", ErrBadSource, rel)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return File{}, fmt.Errorf("%w: %s: %v", ErrBadSource, rel, err)
	}
	if !fi.Mode().IsRegular() {
		return File{}, fmt.Errorf("%w: %s: symlink to a %s, only symlinks to regular files are followed",
			ErrBadSource, rel, kind(fi.Mode()))
	}
	if err := readable(target); err != nil {
		return File{}, fmt.Errorf("%w: %s: not readable: %v", ErrBadSource, rel, err)
	}
	return File{Path: rel, Abs: target, Size: fi.Size(), key: statKey(fi)}, nil
}

func kind(m fs.FileMode) string {
	if m.IsDir() {
		return "directory"
	}
	return m.Type().String()
}

// statFiles fills in the size and quick-check key of the regular files the
// walk found (Size -1), with GOMAXPROCS workers, and checks each is readable.
func statFiles(ctx context.Context, files []File) error {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		g.Go(func() error {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return nil
				}
				f := &files[i]
				if f.Size >= 0 {
					continue // a symlink, resolved during the walk
				}
				if i%1024 == 0 {
					if err := ctx.Err(); err != nil {
						return err
					}
				}
				fi, err := os.Lstat(f.Abs)
				if err != nil {
					return fmt.Errorf("%w: %v", ErrBadSource, err)
				}
				if !fi.Mode().IsRegular() {
					return fmt.Errorf("%w: %s: not a regular file (%s)", ErrBadSource, f.Path, fi.Mode().Type())
				}
				if err := readable(f.Abs); err != nil {
					return fmt.Errorf("%w: %s: not readable: %v", ErrBadSource, f.Path, err)
				}
				f.Size, f.key = fi.Size(), statKey(fi)
			}
		})
	}
	return g.Wait()
}
