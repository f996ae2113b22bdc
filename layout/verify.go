package layout

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// ErrUnexpectedFile is a FileProblem's error for a file of a set directory
// that its manifest does not list.
var ErrUnexpectedFile = errors.New("file not in the manifest")

// ErrObjectMissing is a FileProblem's error for a file of a set whose object
// is missing from objects/ (edges fetch files by their object URL).
var ErrObjectMissing = errors.New("object missing from objects/")

// ErrNotRegular is a FileProblem's error for a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// FileProblem is one file of a set that is not what its manifest says. Err
// is an error wrapping fs.ErrNotExist (missing), ErrNotRegular,
// ErrUnexpectedFile, ErrObjectMissing, a *digest.SizeError or a
// *digest.MismatchError (of the file, or of its object in objects/ if that
// is another inode), or the I/O error met while reading it.
type FileProblem struct {
	Path string // set-relative
	Err  error
}

// VerifyReport is what Verify found.
type VerifyReport struct {
	Set      string
	ID       setid.ID
	Files    int   // files the manifest lists
	Bytes    int64 // their total size
	Expired  bool  // the manifest has expired (its files were still checked)
	Problems []FileProblem
}

// OK reports whether every file is as the manifest says.
func (r *VerifyReport) OK() bool { return len(r.Problems) == 0 }

// Verify checks a published set against its manifest: the manifest's
// signature by a key of v, every file's presence, size and sha256 (hashed by
// GOMAXPROCS workers), every file's object in objects/, and it names files in
// the set directory the manifest does not list. A zero id means the live set. It returns an
// error only if the set cannot be checked at all (unknown set, manifest
// unreadable or not signed by a trusted key); each bad file is a Problem of
// the report. An expired manifest is reported, not an error.
func (r *Root) Verify(ctx context.Context, set string, id setid.ID, v *sign.Verifier) (*VerifyReport, error) {
	return r.VerifyProgress(ctx, set, id, v, nil)
}

// VerifyProgress is Verify, calling progress (if not nil) with the size of
// each file checked, from several goroutines at once: progress must be safe
// for concurrent use.
func (r *Root) VerifyProgress(ctx context.Context, set string, id setid.ID, v *sign.Verifier, progress func(n int64)) (*VerifyReport, error) {
	if id.IsZero() {
		live, err := r.Live(set)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		id = live
	}
	rep, err := r.verify(ctx, set, id, v, progress)
	if err != nil {
		return nil, fmt.Errorf("verify %s %s: %w", set, id, err)
	}
	return rep, nil
}

func (r *Root) verify(ctx context.Context, set string, id setid.ID, v *sign.Verifier, progress func(int64)) (*VerifyReport, error) {
	data, sig, err := r.Manifest(set, id)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{Set: set, ID: id}
	m, err := manifest.Open(data, sig, v, time.Now())
	if errors.Is(err, manifest.ErrExpired) && m != nil {
		rep.Expired = true
	} else if err != nil {
		return nil, err
	}
	if m.Set != set || m.ID != id {
		return nil, fmt.Errorf("%w: directory of %s %s holds the manifest of %s %s", manifest.ErrMismatch, set, id, m.Set, m.ID)
	}
	rep.Files = len(m.Entries)
	rep.Bytes = m.TotalSize()
	dir := r.SetDir(set, id)

	problems := make([]error, len(m.Entries))
	work := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range work {
				problems[i] = r.checkFile(dir, m.Entries[i])
				if progress != nil {
					progress(m.Entries[i].Size)
				}
			}
		})
	}
feed:
	for i := range m.Entries {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, p := range problems {
		if p != nil {
			rep.Problems = append(rep.Problems, FileProblem{Path: m.Entries[i].Path, Err: p})
		}
	}

	// Files the manifest does not list: served by a plain web server, and
	// a sign that something other than Commit wrote here.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == relpath.Reserved && d.IsDir() {
			return filepath.SkipDir
		}
		if d.IsDir() {
			return nil
		}
		if _, ok := m.Lookup(rel); !ok {
			rep.Problems = append(rep.Problems, FileProblem{Path: rel, Err: ErrUnexpectedFile})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(rep.Problems, func(a, b FileProblem) int { return strings.Compare(a.Path, b.Path) })
	return rep, nil
}

// checkFile returns what is wrong with one file of a set, or nil.
func (r *Root) checkFile(dir string, e manifest.Entry) error {
	if err := relpath.Validate(e.Path); err != nil {
		return err
	}
	fi, err := checkContent(filepath.Join(dir, filepath.FromSlash(e.Path)), e, nil)
	if err != nil {
		return err
	}
	// Edges fetch files by their object URL, served from objects/: the
	// object must be there too, normally as the same inode.
	if _, err := checkContent(r.ObjectPath(e.SHA256), e, fi); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrObjectMissing, e.SHA256)
		}
		return fmt.Errorf("object %s: %w", e.SHA256, err)
	}
	return nil
}

// checkContent checks that path is a regular file with e's size and sha256.
// If it is the same file as same, it is not read again.
func checkContent(path string, e manifest.Entry, same fs.FileInfo) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, ErrNotRegular
	}
	if same != nil && os.SameFile(fi, same) {
		return fi, nil
	}
	if fi.Size() != e.Size {
		return nil, &digest.SizeError{Want: e.Size, Got: fi.Size()}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	got, n, err := digest.FromReader(f)
	switch {
	case err != nil:
		return nil, err
	case n != e.Size:
		return nil, &digest.SizeError{Want: e.Size, Got: n}
	case got != e.SHA256:
		return nil, &digest.MismatchError{Want: e.SHA256, Got: got}
	}
	return fi, nil
}
