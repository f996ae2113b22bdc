package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// ErrSourceChanged is wrapped by the error returned when a source file
// changes while it is hashed or sent: the publish is aborted, since the
// bytes published would not be the bytes the build made.
var ErrSourceChanged = errors.New("source file changed during publish")

// ChangedError names the source file that changed and how.
type ChangedError struct {
	Path   string // set-relative
	Detail string // what differs, e.g. "size 10 -> 12"
}

// Error names the file, what changed, and that the publish was aborted.
func (e *ChangedError) Error() string {
	return fmt.Sprintf("%s: %s (%s); publish aborted, rerun when the build has finished writing", e.Path, ErrSourceChanged, e.Detail)
}

// Unwrap lets errors.Is(err, ErrSourceChanged) match.
func (e *ChangedError) Unwrap() error { return ErrSourceChanged }

// A file whose mtime is this close to the start of hashing may be written
// again within the same timestamp tick, keeping its key, so its key is not
// cached (git's "racy clean" problem); it is simply hashed again next time.
// The window depends on the file system's timestamps: whole seconds (FAT,
// HFS+, some NFS) need racyWindow; where mtimes carry sub-second digits
// (ext4, XFS, ZFS, UFS) they come from the kernel's coarse clock, which
// ticks every 1 to 10 ms, and racyWindowFine is ten such ticks. Too wide a
// window costs a rehash of every file a build wrote just before publishing.
const (
	racyWindow     = 2 * time.Second
	racyWindowFine = 100 * time.Millisecond
)

// racy reports whether a file with this mtime (ns) must not be cached by a
// hash that started at start.
func racy(mtime int64, start time.Time) bool {
	w := racyWindow
	if mtime%int64(time.Second) != 0 {
		w = racyWindowFine
	}
	return mtime >= start.Add(-w).UnixNano()
}

// HashConfig configures Hash.
type HashConfig struct {
	// Workers is the number of files hashed at once. If zero, GOMAXPROCS.
	Workers int
	// Cache, if not nil, supplies digests of files whose quick-check key is
	// unchanged and records the new ones. The caller saves it.
	Cache *HashCache
	// Progress, if not nil, is called with the number of bytes just hashed
	// (from several goroutines at once).
	Progress func(n int64)
	// Now is the start of hashing, for the racy-entry rule. If zero, time.Now().
	Now time.Time
	// Open opens a file for reading. If nil, os.Open. Tests count reads with it.
	Open func(name string) (io.ReadCloser, error)
	// Done, if not nil, is called with each file once its SHA256 is known,
	// from several goroutines at once. An error from it stops Hash.
	Done func(File) error

	// store, if not nil, is offered each file the cache does not know
	// (cached: the cache had an entry for its path, with another key). It
	// may store the file while hashing it, in one read instead of a hash
	// now and a copy later: then it sets SHA256 and stored and reports
	// true, with the bytes read. It must check, as hashFile does, that the
	// file did not change while read.
	store func(f *File, cached bool, progress func(int64)) (bool, int64, error)
	// retain, if not nil (and Done is not), keeps the bytes of each small
	// file hashed in File.data (see retainer), passed on to Done, which
	// owns them then and must give them back.
	retain *retainer
}

// HashStats says how much work Hash did.
type HashStats struct {
	Files, Cached int   // files in total, files whose digest came from the cache
	Bytes         int64 // bytes read and hashed
}

// Hash fills in SHA256 of every file, in parallel. A file whose size, mtime,
// inode or ctime differ after hashing from the scan's stat is reported as a
// *ChangedError; a file that cannot be read is an error naming it.
func Hash(ctx context.Context, files []File, cfg HashConfig) (HashStats, error) {
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	open := cfg.Open
	if open == nil {
		open = osOpen
	}
	now := cfg.Now
	if now.IsZero() {
		now = time.Now()
	}
	var next, cached atomic.Int64
	var read atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range min(workers, len(files)) {
		g.Go(func() error {
			buf := make([]byte, 1<<20)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) {
					return nil
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				f := &files[i]
				if cfg.Cache != nil {
					if sum, ok := cfg.Cache.lookup(f.Path, f.key); ok {
						f.SHA256 = sum
						cached.Add(1)
						if cfg.Progress != nil {
							cfg.Progress(f.Size)
						}
						if cfg.Done != nil {
							if err := cfg.Done(*f); err != nil {
								return err
							}
						}
						continue
					}
				}
				var n int64
				stored := false
				var err error
				if cfg.store != nil {
					stored, n, err = cfg.store(f, cfg.Cache != nil && cfg.Cache.has(f.Path), cfg.Progress)
				}
				if !stored && err == nil {
					if cfg.retain != nil && cfg.Done != nil && f.Size > 0 && f.Size <= retainMax {
						n, err = hashKept(ctx, f, cfg.retain, open, cfg.Progress)
					} else {
						n, err = hashFile(f, open, buf, cfg.Progress)
					}
				}
				read.Add(n)
				if err != nil {
					return err
				}
				if cfg.Cache != nil && !racy(f.key.Mtime, now) {
					cfg.Cache.store(f.Path, f.key, f.SHA256)
				}
				if cfg.Done != nil {
					err := cfg.Done(*f)
					f.data = nil // Done's now
					if err != nil {
						return err
					}
				}
			}
		})
	}
	err := g.Wait()
	st := HashStats{Files: len(files), Cached: int(cached.Load()), Bytes: read.Load()}
	if err != nil {
		return st, fmt.Errorf("hash: %w", err)
	}
	return st, nil
}

// hashFile hashes one file and checks it did not change meanwhile.
func hashFile(f *File, open func(string) (io.ReadCloser, error), buf []byte, progress func(int64)) (int64, error) {
	rc, err := open(f.Abs)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Path, err)
	}
	h := digest.New()
	var w io.Writer = h
	if progress != nil {
		w = progressWriter{h, progress}
	}
	n, err := io.CopyBuffer(w, rc, buf)
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("%s: read: %w", f.Path, err)
	}
	if err := checkUnchanged(f, n); err != nil {
		return n, err
	}
	f.SHA256 = digest.FromHash(h)
	return n, nil
}

// checkUnchanged returns a *ChangedError if f's stat is no longer the
// scan's, or if n bytes were read where the scan saw another size: called
// once the file is read, it catches a file changed while it was read.
func checkUnchanged(f *File, n int64) error {
	fi, err := os.Stat(f.Abs)
	if err != nil {
		return &ChangedError{Path: f.Path, Detail: "gone: " + err.Error()}
	}
	if err := compareKeys(f.Path, f.key, statKey(fi)); err != nil {
		return err
	}
	if n != f.Size {
		return &ChangedError{Path: f.Path, Detail: fmt.Sprintf("read %d bytes, size %d", n, f.Size)}
	}
	return nil
}

// compareKeys returns a *ChangedError if the file's stat changed.
func compareKeys(path string, before, after fileKey) error {
	switch {
	case before.Size != after.Size:
		return &ChangedError{Path: path, Detail: fmt.Sprintf("size %d -> %d", before.Size, after.Size)}
	case before.Ino != after.Ino:
		return &ChangedError{Path: path, Detail: "replaced (inode changed)"}
	case before.Mtime != after.Mtime:
		return &ChangedError{Path: path, Detail: "mtime changed"}
	case before.Ctime != after.Ctime:
		return &ChangedError{Path: path, Detail: "ctime changed"}
	}
	return nil
}

type progressWriter struct {
	w io.Writer
	f func(int64)
}

func (p progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.f(int64(n))
	return n, err
}

// osOpen is the default opener of source files.
func osOpen(name string) (io.ReadCloser, error) { return os.Open(name) }
