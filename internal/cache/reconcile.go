package cache

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// reconcile makes the replayed index agree with the directory after a crash,
// in the background while the cache serves: New does not wait for it. It
// lists each fan-out directory (names only: readdir, no stat), and under
// c.mu, checking each finding again with one Lstat (a fill may have
// committed since the listing):
//   - drops entries whose data file is gone (a delete the journal missed),
//   - adopts data files the index does not name, after a process crash
//     (a commit whose add record was lost, and every entry the last run
//     had not made durable: New leaves those to the reconcile) once their
//     bytes hash to their sha256 (the key of a content-addressed entry,
//     else the Meta's; a file with neither is removed): a process crash
//     tears nothing, but a write-back error it never saw may have. They
//     are dirty until the next checkpoint, and fetched again if a request
//     comes first. After a power loss (c.rebooted) they are removed,
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
	// Files the index does not name: removed after a power loss (they
	// may be torn); else candidates, checked below against their sha256.
	var cands []adoptee
	for k, hasMeta := range data {
		if _, ok := c.idx[k]; ok || c.fills[k] != nil {
			continue
		}
		if c.rebooted {
			if err := c.removeFilesLocked(k); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(c.dataPath(k))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		a := adoptee{key: k, size: fi.Size(), ca: !hasMeta}
		if a.ca {
			a.want = digest.SHA256(k) // content-addressed: the name is the sum
		} else {
			m, err := readMeta(c.metaPath(k))
			var corrupt *corruptError
			if err != nil && !errors.As(err, &corrupt) {
				return err
			}
			if err == nil && m.Size == fi.Size() {
				a.want = m.SHA256 // zero (plain mode, unknown): cannot be checked
			}
		}
		cands = append(cands, a)
	}
	c.mu.Unlock()
	for i := range cands {
		cands[i].ok = !cands[i].want.IsZero() && fileHasSum(c.dataPath(cands[i].key), cands[i].size, cands[i].want)
	}
	c.mu.Lock()
	for _, a := range cands {
		if _, ok := c.idx[a.key]; ok || c.fills[a.key] != nil {
			continue // fetched again meanwhile
		}
		if !a.ok {
			if err := c.removeFilesLocked(a.key); err != nil {
				return err
			}
			continue
		}
		i := c.insertLocked(a.key, a.size)
		c.ents[i].ca = a.ca
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

// adoptee is a file the index does not name, found by a reconcile.
type adoptee struct {
	key  Key
	size int64
	ca   bool          // no Meta: content-addressed, or broken
	want digest.SHA256 // what its bytes must hash to; zero: unknown
	ok   bool          // they do
}

// removeFilesLocked removes key's files (not an entry's).
func (c *Cache) removeFilesLocked(k Key) error {
	c.dirtyDirs[k[0]] = true
	return errors.Join(removeIfExists(c.dataPath(k)), removeIfExists(c.metaPath(k)))
}

// fileHasSum reports whether the file at path is size bytes whose sha256
// is want.
func fileHasSum(path string, size int64, want digest.SHA256) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := digest.New()
	n, err := io.Copy(h, f)
	return err == nil && n == size && digest.FromHash(h) == want
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
