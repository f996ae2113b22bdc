// Package layout owns the master's repository root on disk: content-addressed
// objects, published sets as directories of hardlinks, the `current` symlink
// of each set, the signed SETS file, the publish lock and garbage collection.
//
// The tree it draws:
//
//	ROOT/
//	  .lock                               flock(2) of publishers; holds "pid N since T"
//	  .unsynced-<pid>-<random>            a writer's objects may not be on disk yet
//	                                      (flocked by it; see durable.go)
//	  objects/sha256/ab/ab12…             every file ever published, stored once, mode 0444
//	  sets/<set name>/<set ID>/           one published set: hardlinks into objects/
//	      .pkgcdn/manifest                the set's manifest (zstd), and
//	      .pkgcdn/manifest.minisig        its signature
//	  sets/<set name>/current -> <set ID> relative symlink, swapped by rename(2)
//	  staging/<escaped set name>-<ID>/    a set being built by Commit; never served
//	  SETS, SETS.minisig                  the set-ID file and its signature
//
// A set name may hold "/" (FreeBSD:14:amd64/latest): each segment is a
// directory under sets/. Every name and path is validated (setid.ValidateName,
// relpath.Validate, plus the rule of ValidateSetName) before it is joined to
// a directory. Every file another process may read is written to a temp file,
// fsynced, renamed into place, and its directory fsynced; except objects,
// which Commit makes durable in one batch before a set references them.
//
// Readers (Live, SetIDs, SetNames, FilePath, Manifest, Sets, HasObject,
// Verify) are safe for concurrent use with each other and with one writer.
// Writers (Commit, Refresh, GC) must hold the Lock, which serialises them
// across processes; PutObject and PutFile need no lock.
package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// Names of the entries of a root and of a set directory.
const (
	objectsDir  = "objects"
	algoDir     = "sha256"
	setsDir     = "sets"
	stagingDir  = "staging"
	lockFile    = ".lock"
	setsFile    = "SETS"
	setsSigFile = "SETS.minisig"
	currentLink = "current"
	// ManifestFile and ManifestSigFile are where a set directory keeps its
	// manifest and signature (relative to the set directory).
	ManifestFile    = relpath.Reserved + "/manifest"
	ManifestSigFile = relpath.Reserved + "/manifest.minisig"
)

// ErrNotFound means the set, set ID, file or SETS asked for does not exist.
var ErrNotFound = errors.New("not found")

// ErrLocked means the root's lock is held by another publisher; the error
// wrapping it names the holder ("held by pid N since T").
var ErrLocked = errors.New("repository root is locked by another publisher")

// ErrConflict means the manifest's Previous is not the live set ID: someone
// else published the set meanwhile.
var ErrConflict = errors.New("conflict: set published meanwhile")

// ErrSetsChanged means the offered SETS file is not the current SETS with this
// set's new entry: the publisher must re-read SETS and retry.
var ErrSetsChanged = errors.New("SETS changed meanwhile")

// ErrNotRefresh is returned by Refresh for a manifest that differs from the
// live one in more than its expiry.
var ErrNotRefresh = errors.New("refresh may change only the expiry of a manifest")

// MissingObjectsError lists the objects a Commit needs that the root lacks.
type MissingObjectsError struct {
	Missing []digest.SHA256
}

// Error implements error.
func (e *MissingObjectsError) Error() string {
	if len(e.Missing) == 1 {
		return fmt.Sprintf("1 object missing: %s", e.Missing[0])
	}
	return fmt.Sprintf("%d objects missing, first %s", len(e.Missing), e.Missing[0])
}

// Root is a repository root on disk. It is safe for concurrent use. From
// the first object it stores until a Commit has made its objects durable,
// a Root holds its marker file open (see durable.go).
type Root struct {
	// Dir is the root directory, as given to Open.
	Dir string

	// mu guards the un-synced objects state of this Root (see durable.go).
	mu sync.Mutex
	// marker is this Root's objects/.unsynced-* file, flocked while it
	// exists; nil if no object was written since the last sync.
	marker *os.File
	// written lists the objects this Root linked into objects/ since marker
	// was created: what a sync without syncfs(2) must fsync.
	written []digest.SHA256
	// inflight counts putObject calls between marker check and link;
	// started counts every putObject that began, so a Commit can tell that
	// none began during its sync.
	inflight int
	started  uint64
	// stages are this Root's live Stages, by directory: not crash
	// leftovers, whatever their name says (see Recover).
	stages map[string]*Stage
}

// Open opens the root at dir, which must exist, creating objects/sha256,
// sets/ and staging/ if they are missing. It writes nothing else.
func Open(dir string) (*Root, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("open root %s: not a directory", dir)
	}
	r := &Root{Dir: dir}
	for _, d := range []string{filepath.Join(objectsDir, algoDir), setsDir, stagingDir} {
		if err := mkdirAllSync(dir, d); err != nil {
			return nil, fmt.Errorf("open root: %w", err)
		}
	}
	return r, nil
}

// mkdirAllSync creates base/rel and every missing parent below base, and
// fsyncs the parent of each directory it creates, so the new entries survive
// a crash.
func mkdirAllSync(base, rel string) error {
	cur := base
	for _, seg := range strings.Split(filepath.ToSlash(rel), "/") {
		next := filepath.Join(cur, seg)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			fi, serr := os.Lstat(next)
			if serr != nil {
				return serr
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s: not a directory", next)
			}
		default:
			return err
		}
		cur = next
	}
	return nil
}

// ValidateSetName checks a set name with setid.ValidateName, which also
// keeps "current" and set IDs out of every segment but the first.
func ValidateSetName(name string) error { return setid.ValidateName(name) }

// ObjectPath returns the path of the object with digest d:
// ROOT/objects/sha256/ab/ab12….
func (r *Root) ObjectPath(d digest.SHA256) string {
	h := d.String()
	return filepath.Join(r.Dir, objectsDir, algoDir, h[:2], h)
}

// setBase returns ROOT/sets/<name> for a name that passed ValidateSetName.
func (r *Root) setBase(set string) string {
	return filepath.Join(r.Dir, setsDir, filepath.FromSlash(set))
}

// SetDir returns the directory of one published set, ROOT/sets/<set>/<id>.
// It returns "" if set is not a valid set name or id is zero, so a hostile
// name can never produce a path outside the root.
func (r *Root) SetDir(set string, id setid.ID) string {
	if ValidateSetName(set) != nil || id.IsZero() {
		return ""
	}
	return filepath.Join(r.setBase(set), id.String())
}

// FilePath returns the path of file rel of a published set. It validates set
// and rel first; it does not check that the file exists.
func (r *Root) FilePath(set string, id setid.ID, rel string) (string, error) {
	if err := ValidateSetName(set); err != nil {
		return "", err
	}
	if id.IsZero() {
		return "", fmt.Errorf("set %s: zero set ID", set)
	}
	if err := relpath.Validate(rel); err != nil {
		return "", err
	}
	return filepath.Join(r.setBase(set), id.String(), filepath.FromSlash(rel)), nil
}

// Live returns the live set ID of set: the target of its `current` link (one
// readlink, cheap enough for every request). It returns an error wrapping
// ErrNotFound if the set has never been published.
func (r *Root) Live(set string) (setid.ID, error) {
	if err := ValidateSetName(set); err != nil {
		return setid.ID{}, err
	}
	target, err := os.Readlink(filepath.Join(r.setBase(set), currentLink))
	if errors.Is(err, fs.ErrNotExist) {
		return setid.ID{}, fmt.Errorf("set %s: %w", set, ErrNotFound)
	}
	if err != nil {
		return setid.ID{}, fmt.Errorf("live set %s: %w", set, err)
	}
	id, err := setid.Parse(target)
	if err != nil {
		return setid.ID{}, fmt.Errorf("live set %s: current -> %q: %w", set, target, err)
	}
	return id, nil
}

// SetIDs returns the IDs of the retained sets of set, oldest first, or an
// error wrapping ErrNotFound if the set has no directory.
func (r *Root) SetIDs(set string) ([]setid.ID, error) {
	if err := ValidateSetName(set); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(r.setBase(set))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("set %s: %w", set, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("set IDs of %s: %w", set, err)
	}
	var ids []setid.ID
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if id, err := setid.Parse(e.Name()); err == nil {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, setid.ID.Compare)
	return ids, nil
}

// SetNames returns the names of the sets that have a `current` link, sorted.
func (r *Root) SetNames() ([]string, error) {
	var names []string
	if err := r.walkSets(func(name string, current, _ bool) {
		if current {
			names = append(names, name)
		}
	}); err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// walkSets calls visit for every set name with a directory under sets/,
// saying whether that directory holds a `current` link and set ID
// directories. Names that fail ValidateSetName and temp files are skipped.
func (r *Root) walkSets(visit func(name string, current, ids bool)) error {
	var walk func(dir, name string) error
	walk = func(dir, name string) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		current, ids := false, false
		for _, e := range ents {
			n := e.Name()
			if n == currentLink && name != "" {
				current = true
				continue
			}
			if !e.IsDir() || atomicTemp(n) {
				continue
			}
			if _, err := setid.Parse(n); err == nil {
				ids = true // a set directory, not a nested set name
				continue
			}
			child := n
			if name != "" {
				child = name + "/" + n
			}
			if ValidateSetName(child) != nil {
				continue
			}
			if err := walk(filepath.Join(dir, n), child); err != nil {
				return err
			}
		}
		if name != "" { // sets/ itself is no set
			visit(name, current, ids)
		}
		return nil
	}
	return walk(filepath.Join(r.Dir, setsDir), "")
}

// Manifest returns the manifest file of a published set and its signature,
// or an error wrapping ErrNotFound.
func (r *Root) Manifest(set string, id setid.ID) (data, sig []byte, err error) {
	dir := r.SetDir(set, id)
	if dir == "" {
		if err := ValidateSetName(set); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("manifest of %s: zero set ID: %w", set, ErrNotFound)
	}
	data, err = readFile(filepath.Join(dir, filepath.FromSlash(ManifestFile)))
	if err == nil {
		sig, err = readFile(filepath.Join(dir, filepath.FromSlash(ManifestSigFile)))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("manifest of %s %s: %w", set, id, err)
	}
	return data, sig, nil
}

// Sets returns the SETS file and its signature, or an error wrapping
// ErrNotFound before the first Commit.
func (r *Root) Sets() (data, sig []byte, err error) {
	data, err = readFile(filepath.Join(r.Dir, setsFile))
	if err == nil {
		sig, err = readFile(filepath.Join(r.Dir, setsSigFile))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read SETS: %w", err)
	}
	return data, sig, nil
}

// readFile is os.ReadFile with fs.ErrNotExist also wrapping ErrNotFound.
func readFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return b, err
}
