package layout

// Durability of objects, batched.
//
// An object is written to a temp file, closed and linked into place without
// fsync: one barrier per file made a first publish of many small files wait
// on the disk (two per object, 60,000 for 30,000 files), while rsync, the
// yardstick, never syncs. The crash promise still holds because of three
// rules:
//
//  1. Before a Root links its first un-synced object into objects/, it
//     creates and fsyncs (file and root directory) a marker,
//     ROOT/.unsynced-<pid>-<random>, and holds an flock(2) on it for as
//     long as the marker exists. A marker on disk says "objects linked
//     after my mtime may be partial after a power loss" (the link sets the
//     object's ctime, so this holds also for bytes written just before the
//     marker); its flock says whether its writer is still alive. One marker
//     per Root (per process, in practice), because PutObject takes no Lock:
//     a marker shared between processes could be removed by one while
//     another is writing under it. (Without flock(2), on no system we
//     build for, PutObject fails.)
//
//  2. Commit, before it moves a set into sets/, makes every object it
//     references durable: one syncfs(2) of the root's filesystem on Linux,
//     else an fsync of each referenced object not yet in a set and of each
//     of their fan-out directories. Objects already in a set (link count > 1,
//     not counting the links of the Commit's Stage) were made durable by
//     the Commit that linked them. (Its hardlinks into
//     staging/, which is never served, are made while it syncs.) Then, if
//     no putObject of this Root began during the sync, it removes its own
//     marker: everything it wrote is durable.
//
//  3. Whoever takes the Lock (and Commit, again) looks for markers whose
//     flock it can take: their writer died. It removes the staging
//     directories of Commits (leftovers under the Lock), so that a link
//     count > 1 means "in a set" again, less the links of temp files (an
//     object linked into place whose temp name was not removed yet). It
//     re-hashes the objects not in any set whose ctime or mtime is not
//     older than such a marker (less markerSlack, for clock steps), removes
//     those that do not match their name, makes the rest durable, and only
//     then removes the marker.
//
// So after a crash or power loss an object that may be partial is either in
// no set and newer than a marker that is still there (and is checked before
// the next Commit can reference it: a removed one makes Commit return
// *MissingObjectsError, and the publisher sends it again), or it was synced
// before a set referenced it.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// markerPrefix starts the name of a Root's marker of un-synced objects in
// the root directory (not in objects/, which holds objects only). It is not
// an atomicfile temp name: GC must leave it alone.
const markerPrefix = ".unsynced-"

// markerSlack is how much older than a dead writer's marker an object may
// look and still be re-verified: a clock stepped back meanwhile.
const markerSlack = 10 * time.Minute

// useSyncfs says whether syncObjects may sync the whole filesystem with one
// syncfs(2) (Linux). Tests turn it off to cover the fsync-each path.
var useSyncfs = syncfsSupported

// beginPut is called by putObject before it writes an object without
// fsync: it makes sure this Root's marker is on disk, and counts the put as
// in flight until endPut.
func (r *Root) beginPut() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.marker == nil {
		f, err := createMarker(r.Dir)
		if err != nil {
			return fmt.Errorf("create marker of un-synced objects: %w", err)
		}
		r.marker = f
	}
	r.inflight++
	r.started++
	return nil
}

// endPut ends a put begun by beginPut; linked says d was linked into place.
func (r *Root) endPut(d digest.SHA256, linked bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	if linked {
		r.written = append(r.written, d)
	}
}

// createMarker creates, flocks and fsyncs a new marker in dir, the root.
func createMarker(dir string) (*os.File, error) {
	for {
		f, err := os.CreateTemp(dir, markerPrefix+strconv.Itoa(os.Getpid())+"-*")
		if err != nil {
			return nil, err
		}
		ok, err := tryLock(f)
		if err == nil && ok {
			// A Recover that took the flock first (between our create and
			// our flock) took this marker for a dead writer's and removed
			// it: then it has no link left, and we start again.
			var fi fs.FileInfo
			if fi, err = f.Stat(); err == nil && linkCount(fi) == 0 {
				_ = f.Close() // unlinked: nothing to keep
				continue
			}
		}
		if err == nil && !ok {
			_ = f.Close() // Recover holds it and removes it
			continue
		}
		if err == nil {
			_, err = fmt.Fprintf(f, "pid %d since %s: objects written since may not be durable\n",
				os.Getpid(), time.Now().UTC().Format(time.RFC3339))
		}
		if err == nil {
			err = f.Sync()
		}
		if err == nil {
			err = syncDir(dir)
		}
		if err == nil {
			err = faultHook("marker-created")
		}
		if err != nil {
			return nil, errors.Join(err, f.Close(), os.Remove(f.Name()))
		}
		return f, nil
	}
}

// syncObjects makes the objects a Commit is about to link durable: fresh
// are the referenced objects no set holds yet. Then it removes this Root's
// marker, unless a put began meanwhile (it stays for the next Commit).
func (r *Root) syncObjects(ctx context.Context, fresh []digest.SHA256) error {
	r.mu.Lock()
	quiet := r.inflight == 0 // every put begun so far has linked its object
	started := r.started
	written := r.written
	r.mu.Unlock()
	if useSyncfs {
		if err := syncfs(filepath.Join(r.Dir, objectsDir)); err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
	} else {
		ds := append(fresh[:len(fresh):len(fresh)], written...)
		if err := r.syncEach(ctx, ds); err != nil {
			return err
		}
	}
	if err := faultHook("objects-synced"); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.marker == nil || !quiet || r.started != started {
		return nil
	}
	// Remove the name while holding the flock, so no Recover can take
	// the marker for a dead writer's meanwhile; a removal lost to a power
	// loss costs one needless check, but sync it anyway to spare it.
	err := os.Remove(r.marker.Name())
	if err == nil {
		err = syncDir(r.Dir)
	}
	err = errors.Join(err, r.marker.Close())
	r.marker, r.written = nil, nil
	if err != nil {
		return fmt.Errorf("remove marker of un-synced objects: %w", err)
	}
	return nil
}

// syncEach fsyncs each object of ds that exists (GOMAXPROCS×4 at once: the
// disk queues them), then each of their fan-out directories once.
func (r *Root) syncEach(ctx context.Context, ds []digest.SHA256) error {
	dirs := make(map[string]bool)
	for _, d := range ds {
		dirs[filepath.Dir(r.ObjectPath(d))] = true
	}
	err := parallel(ctx, len(ds), 4*runtime.GOMAXPROCS(0), func(i int) error {
		f, err := os.Open(r.ObjectPath(ds[i]))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed by a Recover meanwhile: nothing to sync
		}
		if err != nil {
			return err
		}
		err = f.Sync()
		return errors.Join(err, f.Close())
	})
	if err != nil {
		return fmt.Errorf("sync objects: %w", err)
	}
	for dir := range dirs {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("sync objects: %w", err)
		}
	}
	return nil
}

// parallel runs f(0) … f(n-1) on up to workers goroutines and returns the
// first error; it stops handing out work on an error or when ctx is done.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for i := range work {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

// Recover repairs what a writer that died with un-synced objects may have
// left (see the top of durable.go): for each marker in the root whose flock
// it can take, it re-hashes the objects no set holds that are not older
// than the marker, removes those whose bytes do not match their name, makes
// the others durable, then removes the marker. It returns the objects it
// removed; a publisher sends those again. The caller holds the Lock; Lock
// and Commit call Recover themselves. Without such a marker it reads one
// directory.
func (r *Root) Recover(ctx context.Context) (removed []digest.SHA256, err error) {
	removed, err = r.recover(ctx)
	if err != nil {
		return removed, fmt.Errorf("recover un-synced objects: %w", err)
	}
	return removed, nil
}

// removeStaleWork removes the work directories of staging/ but this Root's
// live Stages: under the Lock, any other is a crash leftover (or a stage
// another process builds without the Lock, which only costs that stage's
// commit its head start).
func (r *Root) removeStaleWork() error {
	stage := filepath.Join(r.Dir, stagingDir)
	ents, err := os.ReadDir(stage)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var live map[string]bool
	for _, e := range ents {
		if !isWorkDir(e.Name()) {
			continue
		}
		if live == nil {
			live = r.liveStageDirs()
		}
		if p := filepath.Join(stage, e.Name()); !live[p] {
			if err := removeWorkDir(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Root) recover(ctx context.Context) ([]digest.SHA256, error) {
	objDir := filepath.Join(r.Dir, objectsDir)
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	own := ""
	if r.marker != nil {
		own = filepath.Base(r.marker.Name())
	}
	r.mu.Unlock()
	var dead []*os.File
	defer func() {
		for _, f := range dead {
			_ = f.Close() // read-only use; closing releases its flock
		}
	}()
	var since time.Time
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), markerPrefix) || e.Name() == own {
			continue
		}
		// Read-only is enough for flock(2), and works for a marker of
		// another user (mode 0600).
		f, err := os.Open(filepath.Join(r.Dir, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // its writer removed it meanwhile
		}
		if err != nil {
			return nil, err
		}
		ok, err := tryLock(f)
		if err != nil || !ok {
			_ = f.Close() // alive (it holds the flock), or the error below
			if err != nil {
				return nil, err
			}
			continue
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close() // the Stat error is the one to report
			return nil, err
		}
		if linkCount(fi) == 0 {
			_ = f.Close() // removed by its writer, a Commit, meanwhile
			continue
		}
		dead = append(dead, f)
		if t := fi.ModTime(); since.IsZero() || t.Before(since) {
			since = t
		}
	}
	// Work directories in staging/ are crash leftovers under the Lock the
	// caller holds, whether or not a writer died: their links must not
	// pass for a set's (which would mean "synced" to a Commit classifying
	// objects by link count, where syncfs is not used).
	if err := r.removeStaleWork(); err != nil {
		return nil, err
	}
	if len(dead) == 0 {
		return nil, nil
	}
	since = since.Add(-markerSlack)

	// A dead writer's links outside sets/ must not pass for a set's
	// (which would mean "synced"): Commit links a set's new objects into
	// staging/ while it syncs them, and putObject and CopyFile link an
	// object while its temp file still has a name. Staging work
	// directories are crash leftovers under the Lock the caller holds: they
	// go. Temp files may belong to live writers: their links are counted
	// off instead.
	tempLinks := make(map[uint64]uint64) // inode -> links by temp files
	// This Root's live Stages (the caller's, built under its Lock) stay;
	// their links are counted off like temp files'.
	live, staged := r.liveStages(true)
	for _, p := range staged {
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if ino := inode(fi); ino != 0 {
			tempLinks[ino]++
		}
	}
	stage := filepath.Join(r.Dir, stagingDir)
	sents, err := os.ReadDir(stage)
	if err != nil {
		return nil, err
	}
	for _, e := range sents {
		switch {
		case live[filepath.Join(stage, e.Name())]:
		case isWorkDir(e.Name()):
			if err := os.RemoveAll(filepath.Join(stage, e.Name())); err != nil {
				return nil, err
			}
		case atomicTemp(e.Name()) && e.Type().IsRegular():
			if err := countTempLink(tempLinks, e); err != nil {
				return nil, err
			}
		}
	}

	// The candidates: objects in no set (link count 1, less temp links)
	// changed since.
	type cand struct {
		d     digest.SHA256
		ino   uint64
		links uint64
	}
	var all []cand
	fan := filepath.Join(objDir, algoDir)
	for i := range 256 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := filepath.Join(fan, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			d, err := digest.Parse(e.Name())
			if err != nil {
				if atomicTemp(e.Name()) && e.Type().IsRegular() {
					if err := countTempLink(tempLinks, e); err != nil {
						return nil, err
					}
				}
				continue // a temp file, or not ours
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if fi.ModTime().Before(since) && changeTime(fi).Before(since) {
				continue // older than the marker
			}
			all = append(all, cand{d, inode(fi), linkCount(fi)})
		}
	}
	var cands []digest.SHA256
	for _, c := range all {
		if c.links > 1 && c.links-tempLinks[c.ino] > 1 {
			continue // in a set, synced by its Commit
		}
		cands = append(cands, c.d)
	}
	bad := make([]bool, len(cands))
	err = parallel(ctx, len(cands), runtime.GOMAXPROCS(0), func(i int) error {
		ok, err := r.objectMatches(cands[i])
		bad[i] = !ok
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := faultHook("recover-verified"); err != nil {
		return nil, err
	}
	var removed, kept []digest.SHA256
	for i, d := range cands {
		if !bad[i] {
			kept = append(kept, d)
			continue
		}
		if err := removeIfExists(r.ObjectPath(d)); err != nil {
			return nil, err
		}
		removed = append(removed, d)
	}
	if len(removed) > 0 {
		gone := make(map[digest.SHA256]bool, len(removed))
		for _, d := range removed {
			gone[d] = true
		}
		r.mu.Lock()
		stages := make([]*Stage, 0, len(r.stages))
		for _, s := range r.stages {
			stages = append(stages, s)
		}
		r.mu.Unlock()
		for _, s := range stages {
			if err := s.dropObjects(gone); err != nil {
				return nil, err
			}
		}
	}
	// The removals and the kept objects must be on disk before the marker
	// goes: a check lost to a power loss would otherwise be lost for good.
	if useSyncfs {
		if err := syncfs(objDir); err != nil {
			return nil, fmt.Errorf("syncfs: %w", err)
		}
	} else {
		if err := r.syncEach(ctx, kept); err != nil {
			return nil, err
		}
		for _, d := range removed {
			if err := syncDir(filepath.Dir(r.ObjectPath(d))); err != nil {
				return nil, err
			}
		}
	}
	if err := faultHook("recover-synced"); err != nil {
		return nil, err
	}
	for _, f := range dead {
		if err := removeIfExists(f.Name()); err != nil {
			return nil, err
		}
	}
	if err := syncDir(r.Dir); err != nil {
		return nil, err
	}
	return removed, nil
}

// countTempLink adds the temp file e's inode to links (a temp file gone
// meanwhile counts for nothing).
func countTempLink(links map[uint64]uint64, e fs.DirEntry) error {
	fi, err := e.Info()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if ino := inode(fi); ino != 0 {
		links[ino]++
	}
	return nil
}

// objectMatches reports whether the object d's bytes hash to d. A missing
// object matches (nothing to remove).
func (r *Root) objectMatches(d digest.SHA256) (bool, error) {
	f, err := os.Open(r.ObjectPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	h := digest.New()
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, *buf); err != nil {
		return false, err
	}
	return digest.FromHash(h) == d, nil
}
