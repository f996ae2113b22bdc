package cache

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

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

// renameFile renames a file over a path that is not a directory.
func renameFile(from, to string) error {
	if err := syscall.Rename(from, to); err != nil {
		return &os.LinkError{Op: "rename", Old: from, New: to, Err: err}
	}
	return nil
}

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

// Commit and durability.
//
// A fill whose bytes verified is done for its readers: they have every
// byte. Keeping it used to cost durability barriers (fsync, syncfs) before
// the entry became visible; on a small-file load those barriers, which also
// write back every other dirty page of the file system, were most of the
// cost of a fill. Now a fill commits at once, without a barrier, and
// durability is made up later, for many entries at a time:
//
//  1. (the fill goroutine, commit) the Meta is written to a temp file in
//     tmp/ and renamed into objects/ (a content-addressed entry has none),
//     then the data temp file (created 0444) is renamed into objects/,
//     and under c.mu the fill becomes an entry marked dirty (not yet
//     durable), journaled as an add. Where syncfs is not used, both files
//     are fsynced first (in parallel, by their fill goroutines).
//  2. (checkpoint, every SyncInterval while something is dirty, and at
//     Close) one barrier makes every file, rename, unlink and journal
//     record so far durable (syncfs; else an fsync of each fan-out
//     directory touched and of the index), then a "synced" record names
//     the journal length it covered, and the entries it covered are clean.
//
// What keeps "never serve a torn or wrong file" after a crash:
//
//   - A process crash (kill -9) loses nothing that was written: the
//     kernel's page cache is the truth, a data file is renamed only after
//     every byte was written and verified, and its Meta was written before
//     that. So when the index says the last run was in this boot (its
//     "open" record carries the boot ID), dirty entries are kept: the
//     reconcile that follows an unclean start serves them again once
//     their bytes hash to their sha256 (a write-back error that the dead
//     process never saw, and that no later syncfs reports, could have
//     dropped a page), and the next checkpoint makes them durable.
//   - A power loss or an OS crash may tear anything not yet durable. When
//     the boot ID differs (or is unknown), New removes every entry not
//     covered by a synced record before it serves anything, and the
//     reconcile removes the files the index does not name instead of
//     adopting them, until a reconcile has finished. At most SyncInterval
//     of fills is lost, and fetched again on demand.
//   - A clean entry's files must not change before the journal's record of
//     its removal is durable, or a power loss could pair the clean record
//     with new, torn files. Removing a clean entry leaves a tombstone, and
//     a fill that would place files under a tombstoned key first runs a
//     checkpoint (rare: evicted and fetched again within SyncInterval).
//   - A writeback error that a checkpoint's syncfs reports (see
//     Cache.fsErrors) removes every dirty entry: any of them may have lost
//     bytes to it.

// errWriteback fails the commit of a fill that may have lost bytes to a
// writeback error that a syncfs reported during the fill (see Cache.fsErrors).
var errWriteback = errors.New("cache: file system reported a writeback error during the fill")

// commit is step 1 for fill f, whose bytes are in data (verified): it
// places meta (unless content-addressed), renames data into place and
// makes f the entry for its key (dirty). On error nothing of f's is kept
// (what it placed is removed) and f is retired.
func (c *Cache) commit(f *fill, data *os.File, meta Meta) (err error) {
	if c.tombstoned(f.key) {
		// A clean entry of this key was removed since the last checkpoint:
		// make that removal durable before files of the key change again.
		if err := c.checkpoint(); err != nil {
			return err
		}
	}
	placed := false
	defer func() {
		if err != nil {
			c.mu.Lock()
			f.retireLocked(false, placed)
			c.mu.Unlock()
		}
	}()
	if err := c.fault("sync"); err != nil {
		return err
	}
	if !c.useSyncfs() {
		if err := data.Sync(); err != nil {
			return err
		}
	}
	if err := c.fault("meta"); err != nil {
		return err
	}
	if !f.spec.ContentAddressed {
		placed = true
		if err := c.placeMeta(f.key, meta); err != nil {
			return err
		}
	}
	if err := c.fault("rename"); err != nil {
		return err
	}
	// syscall.Rename, not os.Rename: that one first Lstats the target
	// (to refuse a directory), a path walk per fill for nothing.
	placed = true
	if err := renameFile(data.Name(), c.dataPath(f.key)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.fsErrors != c.fsErrors.Load() {
		return errWriteback
	}
	f.retireLocked(true, true)
	if !f.spec.ContentAddressed && len(c.metas) < metaCacheLen {
		c.metas[f.key] = meta // the first Get needs no read of the sidecar
	}
	c.evictLocked()
	return nil
}

// placeMeta writes key's Meta sidecar for a commit: to a temp file in tmp/
// (fsynced only where checkpoints do not use syncfs), renamed into place.
// The temp file keeps the new inode in tmp/'s block group: on ext4 an
// inode allocated in a fan-out directory's group can cost a scan of the
// inodes freed there recently (evictions), tens of microseconds each.
func (c *Cache) placeMeta(key Key, m Meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.tmpDir, key.String()+metaSuffix+"."+strconv.FormatUint(tempSeq.Add(1), 10))
	f, err := openFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil && !c.useSyncfs() {
		err = f.Sync()
	}
	if err = errors.Join(err, f.Close()); err == nil {
		err = renameFile(tmp, c.metaPath(key))
	}
	if err != nil {
		_ = os.Remove(tmp) // best effort: New empties tmp/
	}
	return err
}

// markDirtyLocked records that entry i is not durable yet (a commit, or an
// entry adopted or carried over from a crash in this boot), and schedules
// a checkpoint.
func (c *Cache) markDirtyLocked(i int32) {
	c.seq++
	c.ents[i].dirty = c.seq
	c.dirty = append(c.dirty, dirtyRef{slot: i, seq: c.seq})
	c.dirtyDirs[c.ents[i].key[0]] = true
	c.scheduleCheckpointLocked()
}

// tombstoneLocked records the removal of clean entry key (see "Commit and
// durability"), and schedules a checkpoint.
func (c *Cache) tombstoneLocked(key Key) {
	c.seq++
	c.tombs[key] = c.seq
	c.scheduleCheckpointLocked()
}

func (c *Cache) tombstoned(key Key) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.tombs[key]
	return ok
}

// scheduleCheckpointLocked arms the checkpoint timer unless it is armed or
// the cache is closing (Close runs the last checkpoint itself).
func (c *Cache) scheduleCheckpointLocked() {
	if c.ckArmed || c.closed {
		return
	}
	c.ckArmed = true
	c.ckWG.Add(1)
	c.ckTimer = time.AfterFunc(c.cfg.SyncInterval, func() {
		defer c.ckWG.Done()
		c.mu.Lock()
		c.ckArmed = false
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return // Close runs the last one
		}
		if err := c.checkpoint(); err != nil {
			c.log.Warn("cache checkpoint", "path", c.cfg.Dir, "err", err)
		}
	})
}

// stopCheckpointTimerLocked disarms a pending checkpoint (Close); one that
// is running is waited for with ckWG.
func (c *Cache) stopCheckpointTimerLocked() {
	if c.ckArmed && c.ckTimer.Stop() {
		c.ckArmed = false
		c.ckWG.Done()
	}
}

// checkpoint is step 2 of "Commit and durability": it makes everything so
// far durable, then marks the entries it covered clean and journals how
// far it got. If the barrier fails, every dirty entry is removed.
// Checkpoints run one at a time.
func (c *Cache) checkpoint() error {
	c.ckMu.Lock()
	defer c.ckMu.Unlock()
	c.mu.Lock()
	if len(c.dirty) == 0 && len(c.tombs) == 0 && !c.anyDirtyDirLocked() {
		c.mu.Unlock()
		return nil
	}
	jr, covered, upto := c.jr, c.jr.records, c.seq
	dirs := c.dirtyDirs
	c.dirtyDirs = [256]bool{}
	c.mu.Unlock()

	err := c.fault("checkpoint")
	if err == nil {
		err = c.barrier(jr, dirs)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		// Any dirty entry may have lost bytes: keep none of them.
		for _, d := range c.dirty {
			if e := &c.ents[d.slot]; e.live && e.dirty == d.seq {
				c.removeLocked(d.slot)
			}
		}
		c.dirty = c.dirty[:0]
		for b, d := range dirs {
			c.dirtyDirs[b] = c.dirtyDirs[b] || d
		}
		return fmt.Errorf("checkpoint: %w", err)
	}
	keep := c.dirty[:0]
	for _, d := range c.dirty {
		e := &c.ents[d.slot]
		switch {
		case !e.live || e.dirty != d.seq: // removed, or dirtied again
		case d.seq <= upto:
			e.dirty = 0
		default:
			keep = append(keep, d)
		}
	}
	c.dirty = keep
	for k, s := range c.tombs {
		if s <= upto {
			delete(c.tombs, k)
		}
	}
	if c.jr == jr && !jr.failed {
		// Records [0, covered) of this index file are durable. (After a
		// compaction the count means nothing: the snapshot carries each
		// entry's state itself.)
		c.journalLocked(opSynced, Key{}, covered)
	}
	if len(c.dirty) > 0 || len(c.tombs) > 0 {
		c.scheduleCheckpointLocked()
	}
	return nil
}

func (c *Cache) anyDirtyDirLocked() bool {
	for _, d := range c.dirtyDirs {
		if d {
			return true
		}
	}
	return false
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

// dirPaths lists the fan-out directories marked in dirs.
func (c *Cache) dirPaths(dirs [256]bool) []string {
	var out []string
	for b, d := range dirs {
		if d {
			out = append(out, filepath.Join(c.objDir, fanout(byte(b))))
		}
	}
	return out
}

// sync makes the journal's records durable.
func (jr *journal) sync() error {
	if jr == nil || jr.f == nil {
		return nil
	}
	return jr.f.Sync()
}
