package layout

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// keys is a signing key pair for tests.
type keys struct {
	prefix string
	signer *sign.Signer
	v      *sign.Verifier
}

func newKeys(t testing.TB, dir string) keys {
	t.Helper()
	prefix := filepath.Join(dir, "key")
	if _, err := os.Stat(prefix + ".key"); err != nil {
		if _, err := sign.GenerateKey(prefix); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return keys{prefix: prefix, signer: s, v: v}
}

func newRoot(t testing.TB) *Root {
	t.Helper()
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// mustID parses a set ID or fails the test.
func mustID(t testing.TB, s string) setid.ID {
	t.Helper()
	id, err := setid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// files is the content of a set: set-relative path → bytes.
type files map[string]string

// newCommit stores the objects of fs and returns a Commit of them as set
// id (previous prev), announced in a SETS made from what r holds now.
func newCommit(t testing.TB, r *Root, k keys, set string, id, prev setid.ID, fs files) Commit {
	t.Helper()
	m := &manifest.Manifest{Set: set, ID: id, Previous: prev,
		Created: time.Now().UTC().Truncate(time.Second), Expires: time.Now().Add(30 * 24 * time.Hour)}
	for p, content := range fs {
		d := digest.Sum([]byte(content))
		if err := r.PutObject(d, int64(len(content)), bytes.NewReader([]byte(content))); err != nil {
			t.Fatal(err)
		}
		m.Entries = append(m.Entries, manifest.Entry{Path: p, Size: int64(len(content)), SHA256: d, Modified: id})
	}
	m.Sort()
	return signCommit(t, r, k, m)
}

// signCommit signs m and a SETS made from what r holds now plus m.
func signCommit(t testing.TB, r *Root, k keys, m *manifest.Manifest) Commit {
	t.Helper()
	data, sig, err := m.Sign(k.signer)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := r.readSets()
	if err != nil {
		t.Fatal(err)
	}
	sdata, ssig := manifest.SignSets(cur.With(setid.Entry{Set: m.Set, ID: m.ID, Manifest: digest.Sum(data)}), k.signer)
	return Commit{Manifest: m, ManifestData: data, ManifestSig: sig, SetsData: sdata, SetsSig: ssig}
}

// commit takes the lock and commits c.
func commit(t testing.TB, r *Root, k keys, c Commit) error {
	t.Helper()
	unlock, err := r.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unlock(); err != nil {
			t.Error(err)
		}
	}()
	return r.Commit(context.Background(), c, k.v, time.Now())
}

func mustCommit(t testing.TB, r *Root, k keys, c Commit) {
	t.Helper()
	if err := commit(t, r, k, c); err != nil {
		t.Fatalf("Commit(%s %s) = %v", c.Manifest.Set, c.Manifest.ID, err)
	}
}

// checkSet fails the test unless the set directory of set id is complete and
// every file has its manifest's size and sha256.
func checkSet(t testing.TB, r *Root, k keys, set string, id setid.ID) {
	t.Helper()
	rep, err := r.Verify(context.Background(), set, id, k.v)
	if err != nil {
		t.Fatalf("Verify(%s, %s) = %v", set, id, err)
	}
	if !rep.OK() {
		t.Fatalf("Verify(%s, %s): problems %v", set, id, rep.Problems)
	}
}

// tree returns every path under dir (relative), for before/after comparisons.
func tree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// temps returns the atomicfile temp files and staging entries under r.
func leftovers(t testing.TB, r *Root) []string {
	t.Helper()
	var out []string
	for _, p := range tree(t, r.Dir) {
		if atomicfile.IsTemp(filepath.Base(p)) || (filepath.Dir(p) == stagingDir) {
			out = append(out, p)
		}
	}
	return out
}

// setHooks points faultHook and atomicfile.FaultHook at f until the test ends.
func setHooks(t testing.TB, f func(step string) error) {
	t.Helper()
	oldL, oldA := faultHook, atomicfile.FaultHook
	faultHook, atomicfile.FaultHook = f, func(step string) error { return f("atomicfile:" + step) }
	t.Cleanup(func() { faultHook, atomicfile.FaultHook = oldL, oldA })
}

func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// dieUnsynced makes r look like the Root of a process that died with
// un-synced objects: its marker stays on disk, its flock is released.
func dieUnsynced(t testing.TB, r *Root) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.marker == nil {
		t.Fatal("dieUnsynced: r holds no marker")
	}
	if err := r.marker.Close(); err != nil {
		t.Fatal(err)
	}
	r.marker, r.written = nil, nil
}

// markers returns the names of the un-synced markers in r.
func markers(t testing.TB, r *Root) []string {
	t.Helper()
	ents, err := os.ReadDir(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), markerPrefix) {
			out = append(out, e.Name())
		}
	}
	return out
}

// damage does to the object file at path what a power loss may do to a
// file written without fsync.
func damage(t testing.TB, path, how string) {
	t.Helper()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	switch how {
	case "truncated":
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil {
			err = os.Truncate(path, fi.Size()/2)
		}
	case "empty":
		err = os.Truncate(path, 0)
	case "zeroed":
		var b []byte
		if b, err = os.ReadFile(path); err == nil {
			err = os.WriteFile(path, make([]byte, len(b)), 0o644)
		}
	case "lost":
		err = os.Remove(path)
	default:
		t.Fatalf("damage %q?", how)
	}
	if err != nil {
		t.Fatal(err)
	}
	if how != "lost" {
		if err := os.Chmod(path, 0o444); err != nil {
			t.Fatal(err)
		}
	}
}
