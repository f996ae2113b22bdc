package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// DefaultGrace is Policy.Grace when it is zero.
const DefaultGrace = 24 * time.Hour

// Policy says what GC keeps.
type Policy struct {
	// Keep is how many of the newest sets of each set name are kept. If
	// zero, none beyond the live one and those within Grace.
	Keep int
	// Grace keeps a set that stopped being live (its successor's set ID is
	// its end of life) less than Grace before Now, and objects and leftover
	// temp files modified less than Grace before Now: a publish in
	// progress uploads objects before its Commit links them. If zero,
	// DefaultGrace.
	Grace time.Duration
	// Now is the time GC measures ages from. If zero, time.Now().
	Now time.Time
	// DryRun makes GC remove nothing and report what it would remove. A
	// dry run needs no Lock.
	DryRun bool
}

// GCReport says what GC removed.
type GCReport struct {
	SetsRemoved    []string // "<set>/<ID>", in the order removed
	ObjectsRemoved int      // objects no set referenced any more
	BytesFreed     int64    // size of the objects removed
	StagingRemoved int      // leftover staging directories and temp files
}

// GC removes old sets and then unreferenced objects. The caller holds the
// Lock. For each set name it keeps the live set (`current`), the set SETS
// announces, the newest p.Keep sets and every set within p.Grace; it
// removes the others (renamed into staging/ first, so a crash never leaves a
// half-removed set under sets/). Then it removes each object whose only link
// is the one in objects/ (link count 1) unless it is younger than p.Grace,
// every staging directory a Commit or GC left behind, and atomicfile temp
// files older than p.Grace. With p.DryRun it only reports.
func (r *Root) GC(ctx context.Context, p Policy) (rep GCReport, err error) {
	if p.Grace == 0 {
		p.Grace = DefaultGrace
	}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	old := func(t time.Time) bool { return p.Now.Sub(t) >= p.Grace }
	remove := removeIfExists
	removeAll := os.RemoveAll
	if p.DryRun {
		remove = func(string) error { return nil }
		removeAll = remove
	}
	// unlinked counts, in a dry run, the links into objects/ that removing
	// the sets would have dropped.
	unlinked := make(map[digest.SHA256]uint64)
	defer func() {
		if err != nil {
			err = fmt.Errorf("gc: %w", err)
		}
	}()

	onDisk, err := r.readSets()
	if err != nil {
		return rep, err
	}
	names, err := r.setBases()
	if err != nil {
		return rep, err
	}
	for _, set := range names {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		ids, err := r.SetIDs(set)
		if err != nil {
			return rep, err
		}
		keep := make(map[setid.ID]bool)
		if live, err := r.Live(set); err == nil {
			keep[live] = true
		} else if !errors.Is(err, ErrNotFound) {
			return rep, err
		}
		if e, ok := onDisk.Lookup(set); ok {
			keep[e.ID] = true
		}
		for i, id := range ids {
			switch {
			case i >= len(ids)-p.Keep:
			case !old(id.Time()):
			case i+1 < len(ids) && !old(ids[i+1].Time()):
			default:
				continue
			}
			keep[id] = true
		}
		for _, id := range ids {
			if keep[id] {
				continue
			}
			if p.DryRun {
				if err := r.countLinks(set, id, unlinked); err != nil {
					return rep, err
				}
			} else if err := r.removeSet(set, id); err != nil {
				return rep, err
			}
			rep.SetsRemoved = append(rep.SetsRemoved, set+"/"+id.String())
		}
		if err := r.removeTemps(r.setBase(set), old, remove, &rep); err != nil {
			return rep, err
		}
	}

	// Commit and GC work in staging/ only under the Lock this caller
	// holds: their directories there are leftovers of a crash, whatever
	// their age. Anything else goes once older than Grace.
	stage := filepath.Join(r.Dir, stagingDir)
	ents, err := os.ReadDir(stage)
	if err != nil {
		return rep, err
	}
	for _, e := range ents {
		rm := removeAll
		if !isWorkDir(e.Name()) {
			fi, err := e.Info()
			if err != nil || !old(fi.ModTime()) {
				continue
			}
		} else if !p.DryRun {
			rm = removeWorkDir // a master may still be filling a Stage
		}
		if err := rm(filepath.Join(stage, e.Name())); err != nil {
			return rep, err
		}
		rep.StagingRemoved++
	}
	if err := r.removeTemps(r.Dir, old, remove, &rep); err != nil {
		return rep, err
	}

	fan := filepath.Join(r.Dir, objectsDir, algoDir)
	for i := range 256 {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		dir := filepath.Join(fan, fmt.Sprintf("%02x", i))
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, err
		}
		for _, e := range ents {
			name := e.Name()
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // a temp file linked and removed meanwhile
			}
			if err != nil {
				return rep, err
			}
			switch {
			case atomicTemp(name):
				if old(fi.ModTime()) {
					if err := remove(filepath.Join(dir, name)); err != nil {
						return rep, err
					}
					rep.StagingRemoved++
				}
			case fi.Mode().IsRegular() && old(fi.ModTime()):
				d, err := digest.Parse(name)
				if err != nil {
					continue // not ours
				}
				if linkCount(fi)-unlinked[d] != 1 {
					continue // a set holds it; or the count is unknown (0)
				}
				if err := faultHook("gc-object"); err != nil {
					return rep, err
				}
				if err := remove(filepath.Join(dir, name)); err != nil {
					return rep, err
				}
				rep.ObjectsRemoved++
				rep.BytesFreed += fi.Size()
			}
		}
	}
	return rep, nil
}

// removeSet moves a set out of sets/ in one rename, then deletes it.
func (r *Root) removeSet(set string, id setid.ID) error {
	dir := r.SetDir(set, id)
	tomb := filepath.Join(r.Dir, stagingDir, "gc-"+stagingName(set, id))
	if err := os.RemoveAll(tomb); err != nil {
		return err
	}
	if err := os.Rename(dir, tomb); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := faultHook("gc-set-moved"); err != nil {
		return err
	}
	return os.RemoveAll(tomb)
}

// countLinks adds to n the links into objects/ that set id holds, as its
// manifest lists them.
func (r *Root) countLinks(set string, id setid.ID, n map[digest.SHA256]uint64) error {
	data, _, err := r.Manifest(set, id)
	if err != nil {
		return err
	}
	// From the local disk, written by Commit after verifying: no signature
	// check needed to count links.
	m, err := manifest.Decode(data)
	if err != nil {
		return fmt.Errorf("set %s %s: %w", set, id, err)
	}
	for _, e := range m.Entries {
		n[e.SHA256]++
	}
	return nil
}

// removeTemps removes the atomicfile temp files directly in dir (and in the
// .pkgcdn directories of the sets there) that old says are stale.
func (r *Root) removeTemps(dir string, old func(time.Time) bool, remove func(string) error, rep *GCReport) error {
	dirs := []string{dir}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if _, err := setid.Parse(e.Name()); err == nil && e.IsDir() {
			dirs = append(dirs, filepath.Join(dir, e.Name(), relpath.Reserved))
		}
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !atomicTemp(e.Name()) {
				continue
			}
			fi, err := e.Info()
			if err != nil || !old(fi.ModTime()) {
				continue // gone meanwhile, or maybe still being written
			}
			if err := remove(filepath.Join(d, e.Name())); err != nil {
				return err
			}
			rep.StagingRemoved++
		}
	}
	return nil
}

func removeIfExists(path string) error { return ignoreNotExist(os.Remove(path)) }

// setBases returns every set name that has a directory under sets/ holding a
// set directory or a `current` link, sorted.
func (r *Root) setBases() ([]string, error) {
	var names []string
	if err := r.walkSets(func(name string, current, ids bool) {
		if current || ids {
			names = append(names, name)
		}
	}); err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}

// isWorkDir reports whether a name in staging/ is one Commit (stagingName),
// GC (removeSet) or NewStage makes.
func isWorkDir(name string) bool {
	if strings.HasPrefix(name, stagePrefix) {
		return true // a Stage (NewStage)
	}
	name = strings.TrimPrefix(name, "gc-")
	n := len(name) - len(setid.Layout)
	if n < 2 || name[n-1] != '-' {
		return false
	}
	_, err := setid.Parse(name[n:])
	return err == nil && ValidateSetName(strings.ReplaceAll(name[:n-1], "!", "/")) == nil
}
