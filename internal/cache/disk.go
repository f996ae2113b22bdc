package cache

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
)

const metaSuffix = ".meta"

// fanout is the name of the directory holding keys that start with byte b.
func fanout(b byte) string { return hex.EncodeToString([]byte{b}) }

// dataPath is objects/ab/<hex key>.
func (c *Cache) dataPath(k Key) string {
	return filepath.Join(c.objDir, fanout(k[0]), k.String())
}

// metaPath is objects/ab/<hex key>.meta.
func (c *Cache) metaPath(k Key) string { return c.dataPath(k) + metaSuffix }

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readMeta reads a Meta sidecar.
func readMeta(path string) (Meta, error) {
	var m Meta
	b, err := os.ReadFile(path)
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, &corruptError{fmt.Sprintf("meta %s: %v", filepath.Base(path), err)}
	}
	return m, nil
}

// writeMeta atomically replaces key's Meta sidecar: temp file in tmp/,
// fsync, rename, fsync of the fan-out directory. (Not atomicfile.Create:
// that puts its temp file beside the target, and a crash's leftovers would
// then be scattered over 256 directories, which New would have to list.)
func (c *Cache) writeMeta(k Key, m Meta) (err error) {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(c.tmpDir, k.String()+metaSuffix+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()           // already failing
			_ = os.Remove(f.Name()) // best effort; New empties tmp/ anyway
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := c.fault("meta"); err != nil {
		return err
	}
	dst := c.metaPath(k)
	if err := os.Rename(f.Name(), dst); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dst))
}

// Group commit.
//
// A fill whose bytes verified is done for its readers: they have every
// byte. What is left is to keep it, and that takes durability barriers
// (fsync, syncfs) that cost the same for one file as for many. So the fill
// goroutine only prepares its commit, and a committer takes every prepared
// fill waiting at once (a batch) and makes them entries together:
//
//  1. (fill goroutine, prepareCommit) the data temp file is made 0444 and
//     its Meta written to a temp file in tmp/; flushFile makes both
//     durable where the barrier of step 2 cannot (an fsync each, which
//     concurrent fills issue in parallel);
//  2. barrier: syncFiles makes every file of the batch durable (on Linux
//     one syncfs(2) of the cache's file system for all of them); a fill
//     that a writeback error reported since its start may have hit is
//     dropped (see Cache.fsErrors);
//  3. every Meta renamed into objects/, then the directories made durable
//     (syncDirs: one fsync per fan-out directory touched, or one syncfs);
//  4. every data file renamed into objects/, then syncDirs again;
//  5. under c.mu, each becomes an entry (journaled) and leaves c.fills.
//
// Steps 3 and 4 keep the rule that a data file never reaches its final name
// on disk before its Meta does, so after any crash every data file under
// objects/ has a complete Meta of its own (a crash between them leaves
// Metas without data, which the reconcile removes). Renaming both at once
// would save one barrier per batch, but then a crash could leave a new data
// file beside the Meta of an evicted entry of the same key whose unlink was
// not yet durable, and in plain mode that Meta (validators, size) is not
// the new bytes'.
//
// Until step 5 the fill stays in c.fills: a Fill of its key joins the
// finished fill (its temp file is still open) instead of fetching again,
// and Get answers ErrNotFound. A step that fails fails the fills it
// concerns: what of theirs is under objects/ is removed under c.mu (no
// other fill of the key can run meanwhile) and nothing is kept; their
// readers had correct bytes anyway.
//
// The committer goroutine runs only while there is work: the first fill to
// queue starts it, and it returns when it finds the queue empty. Each queued
// fill still holds its count in c.wg, so Close (which waits for c.wg) waits
// for every commit, and a fill can never be left queued with no committer.

// maxBatch bounds the fills of one batch, so that one batch's renames do
// not delay its first entries too long.
const maxBatch = 1024

// errWriteback fails the commit of a fill that may have lost bytes to a
// writeback error that an earlier syncfs reported (see Cache.fsErrors).
var errWriteback = errors.New("cache: file system reported a writeback error during the fill")

// commitTicket is a fill prepared for the committer.
type commitTicket struct {
	f        *fill
	data     *os.File // the fill's temp file (still open for its readers)
	metaTemp string   // the Meta's temp file in tmp/
	dir      string   // fan-out directory of the entry
	placed   bool     // something may be under objects/: remove it on failure
	err      error
}

// prepareCommit is step 1 for fill f: it makes the data file read-only and
// writes meta to a temp file in tmp/ (closed), both flushed by flushFile.
func (c *Cache) prepareCommit(f *fill, data *os.File, meta Meta) (t *commitTicket, err error) {
	t = &commitTicket{f: f, data: data, dir: filepath.Dir(c.dataPath(f.key))}
	if err := c.fault("sync"); err != nil {
		return nil, err
	}
	if err := data.Chmod(0o444); err != nil {
		return nil, err
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	mf, err := os.CreateTemp(c.tmpDir, f.key.String()+metaSuffix+".*")
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := mf.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(mf.Name()) // best effort: New empties tmp/
		}
	}()
	if _, err := mf.Write(b); err != nil {
		return nil, err
	}
	if err := c.flushFile(data, mf); err != nil {
		return nil, err
	}
	t.metaTemp = mf.Name()
	return t, nil
}

// enqueueCommit hands a prepared fill to the committer, starting one if
// none runs. The fill's count in c.wg passes to the committer, which
// releases it once the fill is retired.
func (c *Cache) enqueueCommit(t *commitTicket) {
	c.cmu.Lock()
	c.queue = append(c.queue, t)
	start := !c.committing
	c.committing = true
	c.cmu.Unlock()
	if start {
		c.wg.Add(1) // t's fill still holds its count: the counter is not zero
		go c.committer()
	}
}

// committer commits batches until the queue is empty.
func (c *Cache) committer() {
	defer c.wg.Done()
	for {
		c.cmu.Lock()
		n := min(len(c.queue), maxBatch)
		if n == 0 {
			c.committing = false
			c.cmu.Unlock()
			return
		}
		batch := c.queue[:n:n]
		c.queue = c.queue[n:]
		if len(c.queue) == 0 {
			c.queue = nil // let the array go
		}
		c.cmu.Unlock()
		c.commitBatch(batch)
	}
}

// commitBatch runs steps 2 to 5 of "Group commit" for batch and retires
// its fills.
func (c *Cache) commitBatch(batch []*commitTicket) {
	live := func() []*commitTicket {
		l := batch[:0:0]
		for _, t := range batch {
			if t.err == nil {
				l = append(l, t)
			}
		}
		return l
	}
	fail := func(ts []*commitTicket, err error) {
		if err != nil {
			for _, t := range ts {
				t.err = err
			}
		}
	}
	dirsOf := func(ts []*commitTicket) []string {
		seen := make(map[string]bool, len(ts))
		var dirs []string
		for _, t := range ts {
			if !seen[t.dir] {
				seen[t.dir] = true
				dirs = append(dirs, t.dir)
			}
		}
		return dirs
	}

	ts := live()
	files := make([]*os.File, len(ts))
	for i, t := range ts {
		files[i] = t.data // the Metas are closed: syncfs, if used, covers them too
	}
	fail(ts, c.syncFiles(files))
	for _, t := range live() {
		if t.f.fsErrors != c.fsErrors.Load() {
			t.err = errWriteback
		}
	}

	fail(live(), c.fault("meta"))
	ts = live()
	for _, t := range ts {
		t.placed = true
		t.err = os.Rename(t.metaTemp, c.metaPath(t.f.key))
	}
	ts = live()
	fail(ts, c.syncDirs(dirsOf(ts)))

	fail(live(), c.fault("rename"))
	ts = live()
	for _, t := range ts {
		t.err = os.Rename(t.data.Name(), c.dataPath(t.f.key))
	}
	ts = live()
	fail(ts, c.syncDirs(dirsOf(ts)))

	for _, t := range batch {
		if t.err != nil {
			_ = os.Remove(t.metaTemp) // best effort (gone if renamed): New empties tmp/
		}
	}
	c.mu.Lock()
	for _, t := range batch {
		t.f.retireLocked(t.err == nil, t.placed)
	}
	c.evictLocked()
	c.mu.Unlock()
	for _, t := range batch {
		if t.err != nil {
			c.st.diskErrors.Add(1)
			c.log.Warn("cache commit", "sha256", t.f.key.String(), "err", t.err)
		}
		t.f.end(nil, t.err == nil)
		c.wg.Done() // the fill's count, handed over by enqueueCommit
	}
}

// fsyncEach fsyncs every file.
func fsyncEach(files []*os.File) error {
	for _, f := range files {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// syncEachDir fsyncs every directory.
func syncEachDir(dirs []string) error {
	for _, d := range dirs {
		if err := atomicfile.SyncDir(d); err != nil {
			return err
		}
	}
	return nil
}
