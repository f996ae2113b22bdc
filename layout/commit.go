package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Commit is one set to publish: its signed manifest and the signed SETS file
// that announces it.
type Commit struct {
	// Manifest is ManifestData decoded. If nil, Commit decodes it; if set,
	// its set name, ID and Previous must be those of ManifestData.
	Manifest *manifest.Manifest
	// ManifestData and ManifestSig are the manifest file and its .minisig.
	ManifestData, ManifestSig []byte
	// SetsData and SetsSig are the new SETS file, already listing this set's
	// new ID and manifest sha256, and its .minisig.
	SetsData, SetsSig []byte
	// Stage, if not nil, is the set's directory built ahead (NewStage):
	// Commit takes it over, checks each of its links against the manifest,
	// and links only the rest. If nil, or not usable, Commit builds the
	// directory from scratch.
	Stage *Stage
}

// Commit publishes a set. The caller holds the Lock. It is the one gate both
// local publishing and the master's publish API pass, so it verifies
// everything before it writes anything:
//
//   - the manifest signature by a key of v, its trusted comment and expiry at
//     now (manifest.Open: sign.ErrUnknownKey, sign.ErrBadSignature,
//     manifest.ErrMismatch, manifest.ErrExpired);
//   - the SETS signature by a key of v;
//   - the set ID newer than the announced one (the set's entry in the SETS
//     on disk) and not older than the live one (`current`), else
//     setid.ErrRollback; Manifest.Previous equal to the announced ID (zero if
//     none), else ErrConflict. When no crash interrupted a Commit, the
//     announced and the live ID are the same;
//   - SetsData byte-equal to the SETS on disk (empty if none) with this set's
//     entry replaced by (set, ID, sha256 of ManifestData), else
//     ErrSetsChanged;
//   - every object of the manifest present, else *MissingObjectsError,
//     after Recover removed the objects a writer that died may have left
//     partial (they are then among the missing: send them again).
//
// Then it makes the objects the set references durable (one syncfs(2) on
// Linux; PutObject does not fsync) while it builds staging/<set>-<ID>/ with
// hardlinks into objects/, adds .pkgcdn/manifest{,.minisig}, fsyncs it,
// renames it to sets/<set>/<ID>,
// swaps `current` to it and writes SETS and SETS.minisig. A reader sees the
// old set or the new one, complete. A crash at any step leaves the live set
// untouched, and a rerun of Commit with the same c converges to the same end
// state, reusing what the crashed run completed (a rerun after a complete
// Commit returns nil).
func (r *Root) Commit(ctx context.Context, c Commit, v *sign.Verifier, now time.Time) (err error) {
	m, err := manifest.Open(c.ManifestData, c.ManifestSig, v, now)
	if err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	if c.Manifest != nil && (c.Manifest.Set != m.Set || c.Manifest.ID != m.ID || c.Manifest.Previous != m.Previous) {
		return fmt.Errorf("commit: Manifest (set %s id %s) is not ManifestData (set %s id %s)",
			c.Manifest.Set, c.Manifest.ID, m.Set, m.ID)
	}
	set, id := m.Set, m.ID
	defer func() {
		if err != nil {
			err = fmt.Errorf("commit set %s %s: %w", set, id, err)
		}
	}()
	onDisk, announced, _, err := r.readOffer(set, c, v)
	if err != nil {
		return err
	}
	live, err := r.Live(set)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	entry := setid.Entry{Set: set, ID: id, Manifest: digest.Sum(c.ManifestData)}
	// done: a previous run of this very Commit wrote SETS; only its
	// signature, `current` or nothing may be left to do.
	done := announced == entry
	if !done {
		if err := setid.CheckAdvance(announced.ID, id); err != nil {
			return err
		}
		// A crashed Commit may have swapped `current` past the announced
		// ID: clients of the master have seen it, so never go below it,
		// unless it is this very set (a rerun).
		if live != id && live.After(announced.ID) {
			if err := setid.CheckAdvance(live, id); err != nil {
				return err
			}
		}
		if m.Previous != announced.ID {
			return fmt.Errorf("%w: manifest's previous is %q, the live set is %q", ErrConflict, m.Previous, announced.ID)
		}
	}
	if !bytes.Equal(c.SetsData, onDisk.With(entry).Bytes()) {
		return fmt.Errorf("%w: the offered SETS is not the current SETS with %s %s", ErrSetsChanged, set, id)
	}
	if err := faultHook("commit-verified"); err != nil {
		return err
	}
	if err := r.buildSet(ctx, m, c); err != nil {
		return err
	}
	if live != id {
		if err := atomicfile.ReplaceSymlink(id.String(), filepath.Join(r.setBase(set), currentLink)); err != nil {
			return fmt.Errorf("swap current: %w", err)
		}
	}
	if err := faultHook("current-swapped"); err != nil {
		return err
	}
	// SETS first, then its signature: a reader between the two gets a
	// signature that does not verify and retries; a crash between the two
	// is repaired by the rerun (done above).
	if err := writeIfChanged(filepath.Join(r.Dir, setsFile), c.SetsData, 0o644); err != nil {
		return err
	}
	if err := faultHook("sets-written"); err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(r.Dir, setsSigFile), c.SetsSig, 0o644)
}

// readSets returns the SETS on disk, or an empty Sets if there is none yet.
func (r *Root) readSets() (setid.Sets, error) {
	data, err := os.ReadFile(filepath.Join(r.Dir, setsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return setid.Sets{}, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := setid.ParseSets(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", setsFile, err)
	}
	return s, nil
}

// writeIfChanged atomically writes data to path unless path holds it already.
func writeIfChanged(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	if err := atomicfile.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return nil
}

// stagingName is the staging directory of one Commit: the set name with "/"
// as "!" (a byte no set name holds), "-", the set ID.
func stagingName(set string, id setid.ID) string {
	return strings.ReplaceAll(set, "/", "!") + "-" + id.String()
}

// buildSet makes sets/<set>/<ID> hold the set of m, unless it does already.
func (r *Root) buildSet(ctx context.Context, m *manifest.Manifest, c Commit) (err error) {
	final := filepath.Join(r.setBase(m.Set), m.ID.String())
	if old, err := os.ReadFile(filepath.Join(final, filepath.FromSlash(ManifestFile))); err == nil {
		// Moved into sets/ by a crashed run of this Commit: a set
		// directory only ever arrives there complete and fsynced.
		if !bytes.Equal(old, c.ManifestData) {
			return fmt.Errorf("%w: %s exists with a different manifest", ErrConflict, final)
		}
		// The crashed run synced the objects; this one may hold a marker
		// for the same objects, put again: sync what it wrote and drop it.
		if err := r.syncObjects(ctx, nil); err != nil {
			return err
		}
		return writeIfChanged(filepath.Join(final, filepath.FromSlash(ManifestSigFile)), c.ManifestSig, 0o444)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// Objects a writer that died may have left partial go first, so that
	// they count as missing (Lock did this already, unless that writer
	// died since).
	if _, err := r.Recover(ctx); err != nil {
		return err
	}
	var staged map[digest.SHA256]uint64
	if !useSyncfs {
		staged = c.Stage.linksOf(m.Set)
	}
	missing, fresh, err := r.classify(m, c.Stage, staged)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return &MissingObjectsError{Missing: missing}
	}

	staging := filepath.Join(r.Dir, stagingDir, stagingName(m.Set, m.ID))
	dirs := map[string]bool{".": true} // set-relative directories made so far
	var pre map[string]digest.SHA256   // links the Stage made
	if c.Stage != nil {
		var ok bool
		pre, dirs, ok, err = c.Stage.takeOver(m.Set, staging)
		if err != nil {
			return err
		}
		if !ok {
			pre, dirs = nil, map[string]bool{".": true}
		}
	}
	if pre == nil {
		// A leftover of a crashed run: rebuilding costs links, not copies.
		if err := os.RemoveAll(staging); err != nil {
			return err
		}
		if err := os.Mkdir(staging, 0o755); err != nil {
			return err
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, os.RemoveAll(staging))
		}
	}()
	// A staged link the manifest does not hold (the file changed after it
	// was staged, or is gone) goes.
	for p, d := range pre {
		if e, ok := m.Lookup(p); ok && e.SHA256 == d {
			continue
		}
		if err := os.Remove(filepath.Join(staging, filepath.FromSlash(p))); err != nil {
			return err
		}
		delete(pre, p)
	}
	if pre != nil {
		// And so do the directories no file of the manifest is in.
		need := map[string]bool{".": true}
		for _, e := range m.Entries {
			for _, d := range parents(e.Path) {
				need[d] = true
			}
		}
		var extra []string
		for d := range dirs {
			if !need[d] {
				extra = append(extra, d)
			}
		}
		slices.SortFunc(extra, func(a, b string) int { return len(b) - len(a) }) // deepest first
		for _, d := range extra {
			if err := os.Remove(filepath.Join(staging, filepath.FromSlash(d))); err != nil {
				return err
			}
			delete(dirs, d)
		}
	}
	mkdirs := func(rel string) error {
		for _, d := range parents(rel) {
			if dirs[d] {
				continue
			}
			if err := os.Mkdir(filepath.Join(staging, filepath.FromSlash(d)), 0o755); err != nil {
				return err
			}
			dirs[d] = true
		}
		return nil
	}
	for _, e := range m.Entries {
		// Entries passed relpath.Validate in manifest.Decode; check again
		// here, where a path is about to be joined to a directory.
		if _, err := r.FilePath(m.Set, m.ID, e.Path); err != nil {
			return err
		}
		if err := mkdirs(e.Path); err != nil {
			return err
		}
	}
	// Every object the set will hold must be on disk before the set can
	// become visible: one batched barrier (syncObjects) instead of one per
	// object. The links into staging/ are made meanwhile, on another
	// goroutine (they cost ~14 us each on ext4 and do not run in parallel
	// with each other: the directory's lock), so a set costs little more
	// than its sync. Linking a fresh object before it is synced is safe:
	// staging/ is never served, the set is renamed into sets/ only after
	// the sync, and if this process dies before that, its marker stays
	// and Recover removes this staging directory before it decides, by
	// link count, which objects need checking.
	linked := make(chan error, 1)
	go func() {
		for i, e := range m.Entries {
			if i%1024 == 0 {
				if err := ctx.Err(); err != nil {
					linked <- err
					return
				}
			}
			if d, ok := pre[e.Path]; ok && d == e.SHA256 {
				continue
			}
			err := os.Link(r.ObjectPath(e.SHA256), filepath.Join(staging, filepath.FromSlash(e.Path)))
			if err != nil {
				linked <- err
				return
			}
		}
		linked <- nil
	}()
	// The fault hooks run on this goroutine only, so that their order is
	// the same in every run (the crash tests count them).
	serr := r.syncObjects(ctx, fresh)
	if err := errors.Join(serr, <-linked); err != nil {
		return err
	}
	if err := faultHook("staging-linked"); err != nil {
		return err
	}
	if err := mkdirs(ManifestFile); err != nil {
		return err
	}
	// Written in place, without a temp file: staging/ is never served, and
	// a rerun rebuilds it.
	var written []string
	for _, f := range []struct {
		rel  string
		data []byte
	}{{ManifestFile, c.ManifestData}, {ManifestSigFile, c.ManifestSig}} {
		p := filepath.Join(staging, filepath.FromSlash(f.rel))
		if err := os.WriteFile(p, f.data, 0o444); err != nil {
			return err
		}
		written = append(written, p)
	}
	// The set must be complete on disk before it becomes visible under
	// sets/: its two files, and its directories, whose entries are the
	// hardlinks. On Linux one more syncfs(2) (little is dirty by now: the
	// objects were synced above) instead of an fsync of each file and
	// directory, each of which waits for its own journal commit.
	if useSyncfs {
		if err := syncfs(staging); err != nil {
			return fmt.Errorf("syncfs: %w", err)
		}
	} else {
		for _, p := range written {
			if err := syncFile(p); err != nil {
				return err
			}
		}
		for d := range dirs {
			if err := syncDir(filepath.Join(staging, filepath.FromSlash(d))); err != nil {
				return err
			}
		}
	}
	if err := faultHook("staging-built"); err != nil {
		return err
	}
	if err := mkdirAllSync(filepath.Join(r.Dir, setsDir), filepath.FromSlash(m.Set)); err != nil {
		return err
	}
	if err := os.Rename(staging, final); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return err
	}
	if err := syncDir(filepath.Join(r.Dir, stagingDir)); err != nil {
		return err
	}
	return faultHook("moved")
}

// classify returns the objects of m the root lacks, and those no set holds
// yet (fresh), which may not be on disk yet (PutObject does not fsync).
// staged counts the links to each object that stage (if any) holds: they
// are no set's, so they do not say "durable". With syncfs, whether an
// object is fresh does not matter, and one the Stage linked is there
// (under the Lock only Recover removes objects, and it drops the Stage's
// links to them): its stat is spared.
func (r *Root) classify(m *manifest.Manifest, stage *Stage, staged map[digest.SHA256]uint64) (missing, fresh []digest.SHA256, err error) {
	seen := make(map[digest.SHA256]bool)
	for _, e := range m.Entries {
		if seen[e.SHA256] {
			continue
		}
		if useSyncfs && stage.has(m.Set, e.Path, e.SHA256) {
			continue
		}
		seen[e.SHA256] = true
		fi, err := os.Lstat(r.ObjectPath(e.SHA256))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, e.SHA256)
			continue
		case err != nil:
			return nil, nil, err
		}
		n := linkCount(fi) // 0: unknown, so sync it
		if k := staged[e.SHA256]; k > 0 && n > 0 {
			n -= min(k, n)
		}
		if n <= 1 {
			fresh = append(fresh, e.SHA256)
		}
	}
	return missing, fresh, nil
}

// syncFile fsyncs the file at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// parents returns the parent directories of a slash-separated relative path,
// outermost first: "a/b/c" → "a", "a/b".
func parents(rel string) []string {
	var ps []string
	for i := 0; i < len(rel); i++ {
		if rel[i] == '/' {
			ps = append(ps, rel[:i])
		}
	}
	return ps
}

// readOffer is what Commit and Refresh check first, once the manifest is
// open: the set's name is valid and the offered SETS is signed by v. It
// returns the SETS on disk and the set's entry in it (ok false if none).
func (r *Root) readOffer(set string, c Commit, v *sign.Verifier) (onDisk setid.Sets, announced setid.Entry, ok bool, err error) {
	if err := ValidateSetName(set); err != nil {
		return nil, setid.Entry{}, false, err
	}
	if _, err := manifest.OpenSets(c.SetsData, c.SetsSig, v); err != nil {
		return nil, setid.Entry{}, false, err
	}
	if onDisk, err = r.readSets(); err != nil {
		return nil, setid.Entry{}, false, err
	}
	announced, ok = onDisk.Lookup(set)
	return onDisk, announced, ok, nil
}
