package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
)

// Stage is the directory of a set built ahead of its Commit, while the
// publisher is still hashing: hardlinks into objects/ made as the files'
// digests become known, so that the Commit (Commit.Stage) links only what
// the Stage lacks. A set of 30,000 files costs 30,000 link(2) calls, about
// half a second on ext4 that no parallelism shortens; made while the
// source is read, they cost the Commit nothing.
//
// A Stage lives in staging/, which is never served, under a work name of
// its own ("stage-…", never a Commit's) that Recover and GC of another
// Root remove as a crash leftover. Its caller should hold the Lock from
// NewStage until the Commit that takes the Stage over, or Discard; one that
// does not (a master staging ahead of a remote publisher's commit) only
// risks that another process's GC or Recover removes the Stage meanwhile,
// and then the Commit builds the set from scratch.
// Linking an object that is not durable yet is safe for the same reason
// as Commit's own early links (see durable.go); Recover keeps this Root's
// live Stages, does not take their links for a set's, and drops their
// links to the objects it removes. Link is safe for concurrent use.
type Stage struct {
	r   *Root
	set string

	mu    sync.Mutex // guards the fields below
	dir   string     // "" once taken over or discarded
	links map[string]digest.SHA256
	dirs  map[string]bool // set-relative directories made
	err   error           // the first failure: the Stage is then not used
}

// stagePrefix starts the names of Stages in staging/.
const stagePrefix = "stage-"

// Usable reports whether the Stage can still serve a Commit: not taken
// over or discarded, no Link failed, and its directory still there
// (another process's GC or Recover may have removed it). A nil Stage is
// not usable.
func (s *Stage) Usable() bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" || s.err != nil {
		return false
	}
	_, err := os.Stat(s.dir)
	return err == nil
}

// removeWorkDir removes the staging work directory p, which a process
// staging without the Lock (a master building a set ahead of its commit)
// may still be filling: a plain RemoveAll would then fail with ENOTEMPTY
// when a link lands between its last read and its rmdir. p is renamed
// away first, so that process's next mkdir or link there fails (it gives
// the Stage up) instead of adding to it, and the removal is retried for a
// link that was already on its way. The new name is a work directory too:
// a crash in between leaves it to the next GC or Lock.
func removeWorkDir(p string) error {
	gone := filepath.Join(filepath.Dir(p), stagePrefix+"gone-"+strconv.FormatUint(rand.Uint64(), 36))
	if err := os.Rename(p, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var err error
	for range 10 {
		if err = os.RemoveAll(gone); err == nil {
			return nil
		}
	}
	return err
}

// NewStage makes an empty Stage for set, whose set ID is not known yet.
func (r *Root) NewStage(set string) (*Stage, error) {
	if err := ValidateSetName(set); err != nil {
		return nil, err
	}
	// A work name of its own (no Commit's: see isWorkDir); Commit renames
	// the directory to its staging name.
	dir, err := os.MkdirTemp(filepath.Join(r.Dir, stagingDir), stagePrefix)
	if err != nil {
		return nil, fmt.Errorf("new stage: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, errors.Join(fmt.Errorf("new stage: %w", err), os.Remove(dir))
	}
	s := &Stage{r: r, set: set, dir: dir, links: map[string]digest.SHA256{}, dirs: map[string]bool{".": true}}
	r.mu.Lock()
	if r.stages == nil {
		r.stages = make(map[string]*Stage)
	}
	r.stages[dir] = s
	r.mu.Unlock()
	return s, nil
}

// forget drops the Stage at dir from its Root's live Stages.
func (r *Root) forget(dir string) {
	r.mu.Lock()
	delete(r.stages, dir)
	r.mu.Unlock()
}

// liveStageDirs returns the directories of this Root's live Stages.
func (r *Root) liveStageDirs() map[string]bool {
	dirs, _ := r.liveStages(false)
	return dirs
}

// liveStages returns the directories of this Root's live Stages and, if
// withPaths, the paths they linked (absolute).
func (r *Root) liveStages(withPaths bool) (dirs map[string]bool, paths []string) {
	r.mu.Lock()
	stages := make([]*Stage, 0, len(r.stages))
	for _, s := range r.stages {
		stages = append(stages, s)
	}
	r.mu.Unlock()
	dirs = make(map[string]bool)
	for _, s := range stages {
		s.mu.Lock()
		if s.dir != "" {
			dirs[s.dir] = true
			for p := range s.links {
				if !withPaths {
					break
				}
				paths = append(paths, filepath.Join(s.dir, filepath.FromSlash(p)))
			}
		}
		s.mu.Unlock()
	}
	return dirs, paths
}

// Link makes the set's file path a hardlink of the object d. An object not
// stored (yet) is skipped: the Commit links or reports it. Any other
// failure is kept and returned, and makes the Commit ignore the Stage.
func (s *Stage) Link(path string, d digest.SHA256) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.dir == "" {
		return s.err
	}
	if _, ok := s.links[path]; ok {
		return nil // a path is in a set once
	}
	if err := s.link(path, d); err != nil {
		s.err = fmt.Errorf("stage %s: %w", path, err)
		return s.err
	}
	return nil
}

func (s *Stage) link(path string, d digest.SHA256) error {
	if err := relpath.Validate(path); err != nil {
		return err
	}
	for _, p := range parents(path) {
		if s.dirs[p] {
			continue
		}
		if err := os.Mkdir(filepath.Join(s.dir, filepath.FromSlash(p)), 0o755); err != nil {
			return err
		}
		s.dirs[p] = true
	}
	err := os.Link(s.r.ObjectPath(d), filepath.Join(s.dir, filepath.FromSlash(path)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.links[path] = d
	return nil
}

// dropObjects removes the Stage's links to the objects in gone, which
// Recover removed as damaged: such a link holds the damaged inode, and the
// Commit must link the path again from objects/.
func (s *Stage) dropObjects(gone map[digest.SHA256]bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	for p, d := range s.links {
		if !gone[d] {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, filepath.FromSlash(p))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		delete(s.links, p)
	}
	return nil
}

// has reports whether the Stage, usable for a Commit of set, linked the
// object d as path. A nil Stage has nothing.
func (s *Stage) has(set, path string, d digest.SHA256) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	got, ok := s.links[path]
	return ok && got == d && s.dir != "" && s.err == nil && s.set == set
}

// linksOf returns how many links to each object the Stage, usable for a
// Commit of set, holds. A nil Stage holds none.
func (s *Stage) linksOf(set string) map[digest.SHA256]uint64 {
	n := make(map[digest.SHA256]uint64)
	if s == nil {
		return n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" || s.err != nil || s.set != set {
		return n
	}
	for _, d := range s.links {
		n[d]++
	}
	return n
}

// Discard removes the Stage's directory unless a Commit took it over. It
// is safe to call more than once, and after Commit.
func (s *Stage) Discard() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		return nil
	}
	dir := s.dir
	s.dir = ""
	s.r.forget(dir)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("discard stage: %w", err)
	}
	return nil
}

// takeOver hands the Stage's directory to the Commit of set, renamed to
// staging (replacing a leftover of that name), with what it holds. ok is false if the
// Stage cannot be used (another set, a failed Link, already used); then
// the caller builds from scratch.
func (s *Stage) takeOver(set, staging string) (links map[string]digest.SHA256, dirs map[string]bool, ok bool, err error) {
	// Lock order: Root.mu (in forget) is taken with s.mu held, never the
	// reverse (liveStages releases Root.mu first).
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" || s.err != nil || s.set != set {
		return nil, nil, false, nil
	}
	dir := s.dir
	s.r.forget(dir)
	s.dir = "" // the Commit's now, or gone
	// A leftover of a crashed run may hold the name.
	if err := os.RemoveAll(staging); err != nil {
		return nil, nil, false, errors.Join(err, os.RemoveAll(dir))
	}
	if err := os.Rename(dir, staging); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Removed meanwhile by another process's GC or Recover,
			// which holds the Lock (a master stages without it).
			return nil, nil, false, nil
		}
		return nil, nil, false, errors.Join(err, os.RemoveAll(dir))
	}
	return s.links, s.dirs, true, nil
}
