package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// reconcile makes the replayed index agree with the directory after a crash,
// in the background while the cache serves: New does not wait for it. It
// lists each fan-out directory (names only: readdir, no stat), and under
// c.mu, checking each finding again with one Lstat (a fill may have
// committed since the listing):
//   - drops entries whose data file is gone (a delete the journal missed),
//   - adopts data files the journal missed (a commit whose add record was
//     lost), after a process crash: they are complete by construction, so
//     one stat gives the size; they are dirty until the next checkpoint.
//     After a power loss (c.rebooted) they may be torn: they are removed,
//   - removes a Meta without its data (a commit that died between its
//     Meta and its rename).
//
// Until it is done, Get already copes with what it repairs: an entry whose
// file vanished is dropped on its first Get, and an unadopted file is only
// fetched again. Keys with a fill in flight are left to the fill. The index
// gets its clean mark again only after a reconcile completed, so a crash or
// Close midway means another reconcile at the next New.
func (c *Cache) reconcile(ctx context.Context) {
	defer c.wg.Done()
	defer close(c.reconcileDone)
	start := time.Now()
	err := c.reconcileDirs(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.reconciled = true
		if c.rebooted {
			// Only what the index names is left: from now on this boot's
			// page cache holds the truth (the compaction says so).
			c.rebooted, c.boot = false, c.currentBoot()
		}
		err = c.compactLocked(false)
	}
	if err != nil {
		if ctx.Err() == nil { // else Close interrupted it: the next New resumes
			c.log.Warn("cache reconcile", "path", c.cfg.Dir, "err", err)
		}
		return
	}
	c.log.Info("cache reconciled", "path", c.cfg.Dir, "bytes", c.used, "dur", time.Since(start))
}

func (c *Cache) reconcileDirs(ctx context.Context) error {
	// The index's keys by fan-out directory, as replayed. Entries added
	// later come from commits, which have their files.
	var byDir [256][]Key
	c.mu.Lock()
	for k := range c.idx {
		byDir[k[0]] = append(byDir[k[0]], k)
	}
	c.mu.Unlock()
	for b := range 256 {
		if err := ctx.Err(); err != nil {
			return err
		}
		names, err := readDirNames(filepath.Join(c.objDir, fanout(byte(b))))
		if err != nil {
			return err
		}
		data := make(map[Key]bool, len(names)) // key -> has a .meta
		var metas []Key
		for _, n := range names {
			k, isMeta, ok := parseName(n)
			switch {
			case !ok: // not ours; leave it
			case isMeta:
				metas = append(metas, k)
			default:
				data[k] = data[k] // present, Meta unknown yet
			}
		}
		var orphans []Key // a Meta without data
		for _, k := range metas {
			if _, ok := data[k]; ok {
				data[k] = true
			} else {
				orphans = append(orphans, k)
			}
		}
		if err := c.reconcileDir(byDir[b], data, orphans); err != nil {
			return err
		}
		byDir[b] = nil
	}
	return nil
}

// reconcileDir applies one directory's findings.
func (c *Cache) reconcileDir(indexed []Key, data map[Key]bool, orphans []Key) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	exists := func(p string) (bool, error) {
		_, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return err == nil, err
	}
	for _, k := range indexed {
		i, ok := c.idx[k]
		if _, listed := data[k]; listed || !ok || c.ents[i].pins > 0 {
			continue
		}
		if ok, err := exists(c.dataPath(k)); err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		c.dropLocked(i)
		c.journalLocked(opDel, k, 0)
	}
	for k, hasMeta := range data {
		if _, ok := c.idx[k]; ok || c.fills[k] != nil {
			continue
		}
		// Without a Meta: a content-addressed entry whose add record was
		// lost (rare: a failed append), or a broken one; either way it is
		// fetched again, never served unchecked.
		if !hasMeta || c.rebooted {
			if err := errors.Join(removeIfExists(c.dataPath(k)), removeIfExists(c.metaPath(k))); err != nil {
				return err
			}
			c.dirtyDirs[k[0]] = true
			continue
		}
		fi, err := os.Stat(c.dataPath(k))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		m, err := readMeta(c.metaPath(k))
		var corrupt *corruptError
		if errors.As(err, &corrupt) || err == nil && m.Size != fi.Size() {
			if err := errors.Join(removeIfExists(c.dataPath(k)), removeIfExists(c.metaPath(k))); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		i := c.insertLocked(k, fi.Size())
		c.ents[i].ca = false // it has a Meta
		c.journalAddLocked(i)
		c.markDirtyLocked(i)
	}
	for _, k := range orphans {
		if _, ok := c.idx[k]; ok || c.fills[k] != nil {
			continue
		}
		if ok, err := exists(c.dataPath(k)); err != nil || ok {
			if err != nil {
				return err
			}
			continue
		}
		if err := removeIfExists(c.metaPath(k)); err != nil {
			return err
		}
	}
	c.evictLocked()
	return nil
}

// parseName recognises "<64 hex>" and "<64 hex>.meta".
func parseName(n string) (k Key, isMeta, ok bool) {
	base, isMeta := strings.CutSuffix(n, metaSuffix)
	if len(base) != 2*len(k) || strings.ToLower(base) != base {
		return k, false, false
	}
	if _, err := hex.Decode(k[:], []byte(base)); err != nil {
		return k, false, false
	}
	return k, isMeta, true
}
