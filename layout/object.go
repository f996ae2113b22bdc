package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// objectTempPrefix starts the temp name of an object being written. It is
// atomicfile's temp prefix, so GC (atomicfile.IsTemp) collects the leftovers
// of a crash.
const objectTempPrefix = ".tmp-"

// HasObject reports whether the object with digest d is stored. A present
// object that no set references yet gets its mtime refreshed, so that GC
// (which keeps unreferenced objects younger than its grace period) does not
// collect it between a publisher learning it is present and its Commit.
func (r *Root) HasObject(d digest.SHA256) (bool, error) {
	p := r.ObjectPath(d)
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat object %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("object %s: not a regular file", d)
	}
	if linkCount(fi) == 1 {
		now := time.Now()
		_ = os.Chtimes(p, now, now) // best effort: the object is there either way
	}
	return true, nil
}

// PutObject stores the object d of size bytes read from src. It writes a temp
// file next to the object, verifying sha256 and size while writing
// (digest.Verifier), makes it 0444 and links it into place. It does not
// fsync the object: the Commit that first references it does, for a whole
// batch at once (see durable.go for why a crash still never lets a set
// reference a partial object).
// On a mismatch it returns *digest.MismatchError or *digest.SizeError and
// keeps nothing. An object already present returns nil without reading src.
// PutObject needs no Lock and is safe for concurrent use, also for one object.
func (r *Root) PutObject(d digest.SHA256, size int64, src io.Reader) error {
	if err := r.putStream(d, size, src); err != nil {
		return fmt.Errorf("put object %s: %w", d, err)
	}
	return nil
}

// putStream is PutObject: putObject's steps on a rawFile (no os.File, whose
// open costs five more syscalls), writing whole buffers (a network body
// arrives in reads of a few KiB; one write(2) per MiB instead of one per
// read).
func (r *Root) putStream(d digest.SHA256, size int64, src io.Reader) (err error) {
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if ok, err := r.HasObject(d); err != nil || ok {
		return err
	}
	final := r.ObjectPath(d)
	dir := filepath.Dir(final)
	tmp, f, err := createTempIn(dir, objectTempPrefix+filepath.Base(final)+".")
	if errors.Is(err, fs.ErrNotExist) {
		// The first object of this fan-out directory.
		if err := mkdirAllSync(filepath.Join(r.Dir, objectsDir, algoDir), filepath.Base(dir)); err != nil {
			return err
		}
		tmp, f, err = createTempIn(dir, objectTempPrefix+filepath.Base(final)+".")
	}
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			_ = f.Close() // already failing; the temp file goes below
		}
		if err != nil {
			err = errors.Join(err, ignoreNotExist(os.Remove(tmp)))
		}
	}()
	f.writeAround(size)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	v := digest.NewVerifier(src, d, size)
	for {
		n, rerr := readFull(v, *buf)
		if n > 0 {
			if _, err := f.Write((*buf)[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	if err := faultHook("object-written"); err != nil {
		return err
	}
	// No fsync: see putObject.
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	startWriteback(f)
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return cerr
	}
	_, err = r.linkObject(d, tmp)
	return err
}

// readFull reads from r until buf is full, r ends (io.EOF, also with
// bytes) or fails.
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// createTempIn creates a new temp file in dir whose name starts with prefix.
func createTempIn(dir, prefix string) (string, *rawFile, error) {
	for range 100 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(rand.Uint64(), 36))
		f, err := createExcl(name, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return name, f, nil
	}
	return "", nil, fmt.Errorf("create temp file in %s: too many collisions", dir)
}

// PutFile stores the object d of size bytes copied from the file srcPath,
// with the cheapest copy measured (see defaultCopyMethods): on Linux a clone
// (FICLONE) where the filesystem shares blocks, on FreeBSD
// copy_file_range(2), else a user-space copy that hashes as it copies. It
// checks the size and sha256 of what was written. It never hardlinks
// srcPath: a rebuild overwriting the source in place would change a
// published object (a clone is copy-on-write, so it cannot).
func (r *Root) PutFile(d digest.SHA256, size int64, srcPath string) error {
	if err := r.putObject(d, size, func(f *os.File) error {
		src, err := os.Open(srcPath)
		if err != nil {
			return err
		}
		defer src.Close()
		return copyVerify(f, src, d, size)
	}); err != nil {
		return fmt.Errorf("put file %s as %s: %w", srcPath, d, err)
	}
	return nil
}

// putObject writes a new object with write, which must return an error unless
// it wrote exactly the bytes of d.
//
// It does not use atomicfile.Commit: that renames over the target, and if a
// concurrent writer's copy of the object were already linked into a set, the
// rename would leave objects/ holding a different inode than the set, so the
// set's inode would look unreferenced and objects/ one would be collected.
// link(2) instead fails with EEXIST, and the first copy stays.
func (r *Root) putObject(d digest.SHA256, size int64, write func(*os.File) error) (err error) {
	if size < 0 {
		return fmt.Errorf("negative size %d", size)
	}
	if ok, err := r.HasObject(d); err != nil || ok {
		return err
	}
	final := r.ObjectPath(d)
	dir := filepath.Dir(final)
	f, err := os.CreateTemp(dir, objectTempPrefix+filepath.Base(final)+".*")
	if errors.Is(err, fs.ErrNotExist) {
		// The first object of this fan-out directory.
		if err := mkdirAllSync(filepath.Join(r.Dir, objectsDir, algoDir), filepath.Base(dir)); err != nil {
			return err
		}
		f, err = os.CreateTemp(dir, objectTempPrefix+filepath.Base(final)+".*")
	}
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if f != nil {
			_ = f.Close() // already failing; the temp file goes below
		}
		if err != nil {
			err = errors.Join(err, ignoreNotExist(os.Remove(tmp)))
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := faultHook("object-written"); err != nil {
		return err
	}
	// No f.Sync and no directory fsync after the link: Commit makes the
	// objects it references durable (syncObjects), and Recover checks
	// what a writer that died may have left partial.
	if err := f.Chmod(0o444); err != nil {
		return err
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return cerr
	}
	_, err = r.linkObject(d, tmp)
	return err
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// copyMethod is one way to copy size bytes from src to dst in the kernel and
// verify them against d. It reports false, having written nothing, if it
// cannot copy these files (old kernel, files on two filesystems, a
// filesystem without clones), and then the next method is tried.
type copyMethod func(dst, src *os.File, d digest.SHA256, size int64) (bool, error)

// copyMethods are the in-kernel copies PutFile tries, cheapest first, before
// a user-space copy. Set per system in copy_*.go (and by benchmarks).
var copyMethods = defaultCopyMethods

// copyVerify copies size bytes from src to dst and verifies them, with the
// first of copyMethods that can, else in user space, hashing as it copies.
func copyVerify(dst, src *os.File, d digest.SHA256, size int64) error {
	for _, m := range copyMethods {
		ok, err := m(dst, src, d, size)
		if ok || err != nil {
			return err
		}
	}
	return userCopy(dst, src, d, size)
}

// copyBufs holds the buffers of user-space copies and re-reads: large
// enough that a syscall moves much data, too large to allocate per file.
var copyBufs = sync.Pool{New: func() any { b := alignedBuf(1 << 20); return &b }}

// userCopy copies src to dst in user space, hashing the bytes it copies.
func userCopy(dst, src *os.File, d digest.SHA256, size int64) error {
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return err
	}
	// A method that gave up wrote nothing, so dst is empty: truncate only
	// if it is not. A needless ftruncate(2) to 0 is not free: on ext4 it
	// marks the file for a flush when it is closed (auto_da_alloc, for
	// programs that rewrite files in place without fsync), which made every
	// copy wait for the disk.
	if fi, err := dst.Stat(); err != nil {
		return err
	} else if fi.Size() != 0 {
		if err := dst.Truncate(0); err != nil {
			return err
		}
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// io.CopyBuffer would hand the copy to (*os.File).ReadFrom, i.e. the
	// kernel; hide both ends' other methods to keep it in user space.
	_, err := io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{digest.NewVerifier(src, d, size)}, *buf)
	return err
}

// verifyWritten checks that dst holds exactly size bytes hashing to d (a
// copy copies one byte more than size if there is one, or the whole file, so
// a longer source shows as a longer dst).
func verifyWritten(dst *os.File, d digest.SHA256, size int64) error {
	v := digest.NewVerifier(io.NewSectionReader(dst, 0, size+1), d, size)
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	_, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{v}, *buf)
	return err
}
