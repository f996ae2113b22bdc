package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// CopyOptions configures CopyFile.
type CopyOptions struct {
	// Progress, if not nil, is called with the number of bytes just
	// copied.
	Progress func(n int64)
	// Check, if not nil, is called with the number of bytes copied once
	// the source's last byte is read, before the object is linked into
	// objects/: an error from it keeps nothing and is returned as is. The
	// publisher compares the source's stat with its scan there, so a
	// file that changed while it was read is refused.
	Check func(n int64) error
	// Open opens the source. If nil, it is opened directly, the cheapest
	// way (tests read through their own opener).
	Open func(name string) (io.ReadCloser, error)
	// SizeHint is the source's size if known (its scan), else 0. A large
	// copy is then written around the page cache (see directMin); the
	// bytes stored and their check do not depend on it.
	SizeHint int64
}

// Copied is what CopyFile stored.
type Copied struct {
	SHA256 digest.SHA256 // the digest of the bytes copied
	Size   int64         // bytes copied
	New    bool          // false: the root held the object already; the copy was dropped
}

// CopyFile stores the file at srcPath as the object its bytes hash to,
// hashing as it copies, and returns that digest and the bytes copied. It
// reads the source once, where hashing it first and then PutFile (which
// checks a known digest) reads it twice: for a file whose digest is not
// known yet, such as one missing from the publisher's hash cache.
//
// The copy goes to a temp file in a fan-out directory of objects/ (the
// object's own is not known until the last byte), which is then linked
// into place as putObject does: without fsync, under this Root's marker of
// un-synced objects (see durable.go), so the same crash promise holds. An
// object already present is kept and the copy dropped. A temp file left by
// a crash is collected by GC (temp files older than its grace).
// CopyFile needs no Lock and is safe for concurrent use.
func (r *Root) CopyFile(srcPath string, opt CopyOptions) (Copied, error) {
	c, err := r.copyFile(srcPath, opt)
	if err != nil {
		return c, fmt.Errorf("copy file %s: %w", srcPath, err)
	}
	return c, nil
}

func (r *Root) copyFile(srcPath string, opt CopyOptions) (c Copied, err error) {
	var src io.ReadCloser
	if opt.Open != nil {
		src, err = opt.Open(srcPath)
	} else {
		src, err = openRead(srcPath)
	}
	if err != nil {
		return c, err
	}
	defer func() { err = errors.Join(err, src.Close()) }()
	tmp, dst, err := r.createCopyTemp(srcPath)
	if err != nil {
		return c, err
	}
	defer func() {
		if dst != nil {
			_ = dst.Close() // already failing; the temp file goes below
		}
		if err != nil {
			err = errors.Join(err, ignoreNotExist(os.Remove(tmp)))
		}
	}()
	dst.writeAround(opt.SizeHint)
	h := digest.New()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	n := int64(0)
	for {
		// Whole buffers: a direct write takes whole blocks only.
		k, rerr := readFull(src, *buf)
		if k > 0 {
			h.Write((*buf)[:k])
			if _, err := dst.Write((*buf)[:k]); err != nil {
				return c, err
			}
			n += int64(k)
			if opt.Progress != nil {
				opt.Progress(int64(k))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return c, rerr
		}
	}
	c.Size = n
	if err := faultHook("object-written"); err != nil {
		return c, err
	}
	if err := dst.Chmod(0o444); err != nil {
		return c, err
	}
	startWriteback(dst)
	cerr := dst.Close()
	dst = nil
	if cerr != nil {
		return c, cerr
	}
	if opt.Check != nil {
		if err := opt.Check(n); err != nil {
			return c, err
		}
	}
	c.SHA256 = digest.FromHash(h)
	c.New, err = r.linkObject(c.SHA256, tmp)
	return c, err
}

// copyTempPrefix starts the names of CopyFile's temp files (os.Getpid is a
// syscall: once is enough).
var copyTempPrefix = objectTempPrefix + "copy-" + strconv.Itoa(os.Getpid()) + "-"

// createCopyTemp creates a new temp file for the copy of srcPath in a
// fan-out directory of objects/, where temp files of objects belong: GC
// collects a crash's leftovers there, and staging/ holds only work
// directories. The object's own directory is not known until the last
// byte; the one picked is spread by the source's base name, since copies
// sharing a directory contend for its lock (the create and the removal
// of every temp file), and does not depend on chance (the crash tests
// compare trees).
func (r *Root) createCopyTemp(srcPath string) (string, *rawFile, error) {
	fan := filepath.Join(r.Dir, objectsDir, algoDir)
	sub := digest.Sum([]byte(filepath.Base(srcPath))).String()[:2]
	dir := filepath.Join(fan, sub)
	tmp, f, err := createTempIn(dir, copyTempPrefix)
	if errors.Is(err, fs.ErrNotExist) {
		if err := mkdirAllSync(fan, sub); err != nil {
			return "", nil, err
		}
		tmp, f, err = createTempIn(dir, copyTempPrefix)
	}
	return tmp, f, err
}

// linkObject links the complete, closed temp file tmp into objects/ as d
// and removes tmp. An object d already there is kept (link(2) never
// replaces; see putObject) and its mtime refreshed as HasObject does.
// It reports whether it linked tmp (false: d was there already).
func (r *Root) linkObject(d digest.SHA256, tmp string) (linked bool, err error) {
	// The marker before the link: from here on this Root may leave an
	// object in objects/ that is not on disk yet.
	if err := r.beginPut(); err != nil {
		return false, err
	}
	defer func() { r.endPut(d, linked) }()
	if err := faultHook("object-link"); err != nil {
		return false, err
	}
	final := r.ObjectPath(d)
	err = os.Link(tmp, final)
	if errors.Is(err, fs.ErrNotExist) {
		// The first object of this fan-out directory.
		if err := mkdirAllSync(filepath.Join(r.Dir, objectsDir, algoDir), filepath.Base(filepath.Dir(final))); err != nil {
			return false, err
		}
		err = os.Link(tmp, final)
	}
	switch {
	case errors.Is(err, fs.ErrExist):
		// Stored meanwhile, or before: that copy stays. Refresh it as
		// HasObject would, so GC spares it until the Commit.
		if _, err := r.HasObject(d); err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	default:
		linked = true
	}
	return linked, os.Remove(tmp)
}
