package cache

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// reconcileLocked makes the replayed index agree with the directory after a
// crash. It lists each fan-out directory (names only: readdir, no stat) and
//   - drops entries whose data file is gone (a delete the journal missed),
//   - adopts data files the journal missed (a commit whose add record was
//     lost): they are complete by construction, so one stat gives the size,
//   - removes a Meta without its data (a commit that died between renames).
func (c *Cache) reconcileLocked() error {
	present := make(map[Key]bool, len(c.idx)) // data file key -> has a .meta
	var orphans []Key                         // a .meta without data
	for b := 0; b < 256; b++ {
		dir := filepath.Join(c.objDir, fanout(byte(b)))
		names, err := readDirNames(dir)
		if err != nil {
			return err
		}
		metas := make(map[Key]bool)
		for _, n := range names {
			k, isMeta, ok := parseName(n)
			if !ok {
				continue // not ours; leave it
			}
			if isMeta {
				metas[k] = true
			} else {
				present[k] = false
			}
		}
		for k := range metas {
			if _, ok := present[k]; ok {
				present[k] = true
			} else {
				orphans = append(orphans, k)
			}
		}
	}
	for k, i := range c.idx {
		if _, ok := present[k]; !ok {
			c.dropLocked(i)
		}
	}
	for _, k := range orphans {
		if err := removeIfExists(c.metaPath(k)); err != nil {
			return err
		}
	}
	for k, hasMeta := range present {
		if _, ok := c.idx[k]; ok {
			continue
		}
		if !hasMeta { // cannot happen with our commit order; never serve it
			if err := removeIfExists(c.dataPath(k)); err != nil {
				return err
			}
			continue
		}
		fi, err := os.Stat(c.dataPath(k))
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
		c.insertLocked(k, fi.Size())
	}
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
