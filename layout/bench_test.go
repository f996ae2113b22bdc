package layout

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// BenchmarkPutFile compares copy_file_range plus a re-read of what was
// written with a user-space copy that hashes while it copies.
func BenchmarkPutFile(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20} {
		content := make([]byte, size)
		_, _ = rand.Read(content)
		d := digest.Sum(content)
		src := filepath.Join(b.TempDir(), "src.pkg")
		if err := os.WriteFile(src, content, 0o644); err != nil {
			b.Fatal(err)
		}
		for _, m := range []struct {
			name    string
			methods []copyMethod
		}{{"default", defaultCopyMethods}, {"copy_file_range+reread", []copyMethod{copyFileRange}},
			{"copy_file_range+hash_source", []copyMethod{copyFileRangeHashing}}, {"userspace", nil}} {
			b.Run(fmt.Sprintf("%s/%dKiB", m.name, size>>10), func(b *testing.B) {
				old := copyMethods
				copyMethods = m.methods
				b.Cleanup(func() { copyMethods = old })
				r := newRoot(b)
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := r.PutFile(d, int64(size), src); err != nil {
						b.Fatal(err)
					}
					if err := os.Remove(r.ObjectPath(d)); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkCommit commits sets of 30,000 files whose objects are present:
// verifying, 30,000 hardlinks, the directory fsyncs, the swap, SETS.
func BenchmarkCommit(b *testing.B) {
	const n = 30_000
	r := newRoot(b)
	k := newKeys(b, b.TempDir())
	entries := make([]manifest.Entry, n)
	for i := range entries {
		content := []byte(fmt.Sprintf("package %d\n", i))
		d := digest.Sum(content)
		// Straight into objects/: the benchmark is about Commit (which
		// syncs them, the first time round).
		if err := os.MkdirAll(filepath.Dir(r.ObjectPath(d)), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(r.ObjectPath(d), content, 0o444); err != nil {
			b.Fatal(err)
		}
		entries[i] = manifest.Entry{Path: fmt.Sprintf("All/pkg-%05d.pkg", i), Size: int64(len(content)), SHA256: d}
	}
	var prev setid.ID
	id := setid.FromTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := b.Context()
	unlock, err := r.Lock(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer unlock()
	for b.Loop() {
		b.StopTimer()
		for i := range entries {
			entries[i].Modified = id
		}
		m := &manifest.Manifest{Set: set1, ID: id, Previous: prev, Created: time.Now().UTC(),
			Expires: time.Now().Add(time.Hour), Entries: entries}
		c := signCommit(b, r, k, m)
		b.StartTimer()
		if err := r.Commit(ctx, c, k.v, time.Now()); err != nil {
			b.Fatal(err)
		}
		prev, id = id, setid.Next(id, id.Time())
	}
}

// BenchmarkCopyVerify isolates the copy and its check from PutFile's fsync,
// which dominates PutFile on most disks.
func BenchmarkCopyVerify(b *testing.B) {
	for _, size := range []int{64 << 10, 16 << 20} {
		content := make([]byte, size)
		_, _ = rand.Read(content)
		d := digest.Sum(content)
		dir := b.TempDir()
		srcPath := filepath.Join(dir, "src.pkg")
		if err := os.WriteFile(srcPath, content, 0o644); err != nil {
			b.Fatal(err)
		}
		for _, m := range []struct {
			name    string
			methods []copyMethod
		}{{"default", defaultCopyMethods}, {"copy_file_range+reread", []copyMethod{copyFileRange}},
			{"copy_file_range+hash_source", []copyMethod{copyFileRangeHashing}}, {"userspace", nil}} {
			b.Run(fmt.Sprintf("%s/%dKiB", m.name, size>>10), func(b *testing.B) {
				old := copyMethods
				copyMethods = m.methods
				b.Cleanup(func() { copyMethods = old })
				b.SetBytes(int64(size))
				cpu0 := cpuTime()
				for b.Loop() {
					src, err := os.Open(srcPath)
					if err != nil {
						b.Fatal(err)
					}
					dst, err := os.Create(filepath.Join(dir, "dst"))
					if err != nil {
						b.Fatal(err)
					}
					if err := copyVerify(dst, src, d, int64(size)); err != nil {
						b.Fatal(err)
					}
					src.Close()
					dst.Close()
				}
				b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// BenchmarkPutSmallObjectsThenSync is the object side of a first publish of
// many small files: 1,000 PutObject of 1 KiB, then the sync a Commit does
// before linking them (syncfs on Linux, or an fsync of each object and
// fan-out directory where there is none). Before objects were batched,
// each PutObject did its own two fsyncs.
func BenchmarkPutSmallObjectsThenSync(b *testing.B) {
	const n = 1000
	for _, on := range []bool{true, false} {
		if on && !syncfsSupported {
			continue
		}
		name := "syncfs"
		if !on {
			name = "fsync-each"
		}
		b.Run(name, func(b *testing.B) {
			old := useSyncfs
			useSyncfs = on
			b.Cleanup(func() { useSyncfs = old })
			r := newRoot(b)
			content := make([]byte, 1024)
			ds := make([]digest.SHA256, n)
			round := 0
			b.SetBytes(n * int64(len(content)))
			for b.Loop() {
				round++
				for i := range ds {
					copy(content, fmt.Sprintf("round %d object %d\n", round, i))
					ds[i] = digest.Sum(content)
					if err := r.PutObject(ds[i], int64(len(content)), bytes.NewReader(content)); err != nil {
						b.Fatal(err)
					}
				}
				if err := r.syncObjects(b.Context(), ds); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/object")
		})
	}
}

// BenchmarkStoreNewFile stores a file whose digest is not known yet: hash
// it, then PutFile (two reads of the source, two hashes), against
// CopyFile (one read, one hash).
func BenchmarkStoreNewFile(b *testing.B) {
	for _, size := range []int{35 << 10, 4 << 20} {
		content := make([]byte, size)
		_, _ = rand.Read(content)
		src := filepath.Join(b.TempDir(), "src.pkg")
		if err := os.WriteFile(src, content, 0o644); err != nil {
			b.Fatal(err)
		}
		d := digest.Sum(content)
		b.Run(fmt.Sprintf("hash+PutFile/%dKiB", size>>10), func(b *testing.B) {
			r := newRoot(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				f, err := os.Open(src)
				if err != nil {
					b.Fatal(err)
				}
				got, _, err := digest.FromReader(f)
				f.Close()
				if err != nil || got != d {
					b.Fatal(got, err)
				}
				if err := r.PutFile(got, int64(size), src); err != nil {
					b.Fatal(err)
				}
				if err := os.Remove(r.ObjectPath(d)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("CopyFile/%dKiB", size>>10), func(b *testing.B) {
			r := newRoot(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				c, err := r.CopyFile(src, CopyOptions{})
				if err != nil || c.SHA256 != d {
					b.Fatal(c, err)
				}
				if err := os.Remove(r.ObjectPath(d)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// chunkReader returns at most 16 KiB per Read, as a request body does.
type chunkReader struct{ b []byte }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 16<<10)], c.b)
	c.b = c.b[n:]
	return n, nil
}

// BenchmarkPutObject stores an uploaded object from a reader that yields
// 16 KiB at a time, as the master does for each PUT or batch record.
func BenchmarkPutObject(b *testing.B) {
	for _, size := range []int{35 << 10, 4 << 20} {
		content := make([]byte, size)
		_, _ = rand.Read(content)
		d := digest.Sum(content)
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			r := newRoot(b)
			b.SetBytes(int64(size))
			for b.Loop() {
				if err := r.PutObject(d, int64(size), &chunkReader{content}); err != nil {
					b.Fatal(err)
				}
				if err := os.Remove(r.ObjectPath(d)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCommitChanged commits a set of 30,000 files of which 5% are new
// objects, put just before (not synced yet), the rest those of the live
// set: a daily republish.
func BenchmarkCommitChanged(b *testing.B) {
	const n = 30_000
	r := newRoot(b)
	k := newKeys(b, b.TempDir())
	entries := make([]manifest.Entry, n)
	put := func(i, gen int) {
		content := []byte(fmt.Sprintf("package %d generation %d\n", i, gen))
		d := digest.Sum(content)
		if err := r.PutObject(d, int64(len(content)), bytes.NewReader(content)); err != nil {
			b.Fatal(err)
		}
		entries[i] = manifest.Entry{Path: fmt.Sprintf("All/pkg-%05d.pkg", i), Size: int64(len(content)), SHA256: d}
	}
	for i := range entries {
		put(i, 0)
	}
	var prev setid.ID
	id := setid.FromTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	ctx := b.Context()
	unlock, err := r.Lock(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer unlock()
	commit := func() {
		for i := range entries {
			if entries[i].Modified.IsZero() {
				entries[i].Modified = id
			}
		}
		m := &manifest.Manifest{Set: set1, ID: id, Previous: prev, Created: time.Now().UTC(),
			Expires: time.Now().Add(time.Hour), Entries: slices.Clone(entries)}
		c := signCommit(b, r, k, m)
		if err := r.Commit(ctx, c, k.v, time.Now()); err != nil {
			b.Fatal(err)
		}
		prev, id = id, setid.Next(id, id.Time())
	}
	commit()
	gen := 0
	for b.Loop() {
		b.StopTimer()
		gen++
		for i := gen % 20; i < n; i += 20 {
			put(i, gen)
		}
		b.StartTimer()
		commit()
	}
}
