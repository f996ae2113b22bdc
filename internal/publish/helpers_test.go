package publish

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

const testSet = "FreeBSD:14:amd64/latest"

// newKey writes a key pair under t.TempDir and returns the signer and the
// public key file.
func newKey(t testing.TB) (*sign.Signer, string) {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "k")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	return s, prefix + ".pub"
}

// writeTree writes files (path → content) under dir, with mtimes an hour
// old so the hash cache may keep them (see racyWindow).
func writeTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(full, old, old); err != nil {
			t.Fatal(err)
		}
	}
}

// clock returns a Now func starting at a fixed instant, an hour later at
// each call.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Hour)
		return t
	}
}

func newRoot(t testing.TB) *layout.Root {
	t.Helper()
	r, err := layout.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// liveManifest returns the live manifest of set, checking its signature.
func liveManifest(t testing.TB, r *layout.Root, set, pub string) *manifest.Manifest {
	t.Helper()
	id, err := r.Live(set)
	if err != nil {
		t.Fatalf("Live(%s): %v", set, err)
	}
	data, sig, err := r.Manifest(set, id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Open(data, sig, v, id.Time())
	if err != nil {
		t.Fatalf("live manifest %s: %v", id, err)
	}
	return m
}

// checkConsistent checks that the live set of r is whole: its manifest is
// signed, SETS (when it names the set) is signed and names a retained set,
// and every file of the live set has its manifest's size and sha256.
func checkConsistent(t testing.TB, r *layout.Root, set, pub string) *manifest.Manifest {
	t.Helper()
	m := liveManifest(t, r, set, pub)
	for _, e := range m.Entries {
		p, err := r.FilePath(set, m.ID, e.Path)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("live set %s: %v", m.ID, err)
		}
		if int64(len(b)) != e.Size || digest.Sum(b) != e.SHA256 {
			t.Fatalf("live set %s: %s does not match its manifest", m.ID, e.Path)
		}
	}
	data, sig, err := r.Sets()
	if errors.Is(err, layout.ErrNotFound) {
		return m
	}
	if err != nil {
		t.Fatal(err)
	}
	v, _ := sign.NewVerifier(pub)
	sets, err := manifest.OpenSets(data, sig, v)
	if err != nil {
		// Only between SETS and SETS.minisig being written: a reader retries.
		t.Logf("SETS not verifiable (commit interrupted between SETS and its signature): %v", err)
		return m
	}
	if e, ok := sets.Lookup(set); ok {
		md, _, err := r.Manifest(set, e.ID)
		if err != nil {
			t.Fatalf("SETS names %s %s: %v", set, e.ID, err)
		}
		if digest.Sum(md) != e.Manifest {
			t.Fatalf("SETS names a manifest sha256 that %s %s does not have", set, e.ID)
		}
	}
	return m
}

// contentOf returns path → content of m's files as stored in r.
func contentOf(t testing.TB, r *layout.Root, m *manifest.Manifest) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range m.Entries {
		b, err := os.ReadFile(r.ObjectPath(e.SHA256))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Path] = string(b)
	}
	return out
}

// countingOpener counts the files opened for reading and the bytes read.
type countingOpener struct {
	mu    sync.Mutex
	opens map[string]int
	bytes int64
}

func (c *countingOpener) open(name string) (io.ReadCloser, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.opens == nil {
		c.opens = map[string]int{}
	}
	c.opens[filepath.Base(name)]++
	c.mu.Unlock()
	return &countingFile{f, c}, nil
}

func (c *countingOpener) total() (int, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.opens {
		n += v
	}
	return n, c.bytes
}

type countingFile struct {
	*os.File
	c *countingOpener
}

func (f *countingFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.c.mu.Lock()
	f.c.bytes += int64(n)
	f.c.mu.Unlock()
	return n, err
}

// snapshot returns SETS, SETS.minisig and the live ID of set.
func snapshot(t testing.TB, r *layout.Root, set string) (string, setid.ID) {
	t.Helper()
	data, sig, err := r.Sets()
	if err != nil && !errors.Is(err, layout.ErrNotFound) {
		t.Fatal(err)
	}
	id, err := r.Live(set)
	if err != nil && !errors.Is(err, layout.ErrNotFound) {
		t.Fatal(err)
	}
	return string(bytes.Join([][]byte{data, sig}, []byte("\x00"))), id
}
