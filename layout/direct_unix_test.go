//go:build unix

package layout

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// directWorks reports whether files in dir take direct writes here (Linux
// on a filesystem with O_DIRECT): then objects from directMin on must be
// written that way, else none may be.
func directWorks(t *testing.T, dir string) bool {
	t.Helper()
	f, err := createExcl(filepath.Join(dir, "probe"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return f.setDirect(true) == nil
}

// directSizes straddle every boundary of the direct path: the block, the
// threshold, the copy buffer.
var directSizes = []int{0, 1, directAlign - 1, directAlign, directAlign + 1, directMin - 1, directMin,
	directMin + 1, directMin + 100, 1 << 20, 1<<20 + directAlign, 3<<20 + 123}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkStored checks that the object of content holds exactly it, and
// that it was written around the page cache iff it should have been.
func checkStored(t *testing.T, r *Root, content []byte, directBefore int64, direct bool) {
	t.Helper()
	got, err := os.ReadFile(r.ObjectPath(digest.Sum(content)))
	if err != nil || !bytes.Equal(got, content) {
		t.Fatalf("object holds %d bytes (%v), want the %d written", len(got), err, len(content))
	}
	wantDirect := direct && len(content) >= directMin
	if gotDirect := directFiles.Load() > directBefore; gotDirect != wantDirect {
		t.Errorf("%d bytes: written with direct I/O: %v, want %v", len(content), gotDirect, wantDirect)
	}
}

// Not parallel: the tests read the package's count of direct files.
func TestPutObjectAroundPageCache(t *testing.T) {
	r := newRoot(t)
	direct := directWorks(t, t.TempDir())
	t.Logf("direct I/O here: %v", direct)
	for _, size := range directSizes {
		content := randomBytes(t, size)
		before := directFiles.Load()
		// A network body arrives in small, odd reads.
		if err := r.PutObject(digest.Sum(content), int64(size), iotest.HalfReader(bytes.NewReader(content))); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		checkStored(t, r, content, before, direct)
	}
}

func TestCopyFileAroundPageCache(t *testing.T) {
	r := newRoot(t)
	src := t.TempDir()
	direct := directWorks(t, src)
	for _, size := range directSizes {
		content := randomBytes(t, size)
		path := filepath.Join(src, "src.pkg")
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		// The hint decides; a stale one (the file changed size since its
		// scan) changes nothing in what is stored.
		for _, hint := range []int64{int64(size), int64(size) + directMin, int64(size) / 2} {
			// Each round stores the object anew.
			if err := os.Remove(r.ObjectPath(digest.Sum(content))); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			before := directFiles.Load()
			c, err := r.CopyFile(path, CopyOptions{SizeHint: hint})
			if err != nil || c.Size != int64(size) || c.SHA256 != digest.Sum(content) {
				t.Fatalf("%d bytes, hint %d: CopyFile = %+v, %v", size, hint, c, err)
			}
			wantDirect := direct && hint >= directMin
			if gotDirect := directFiles.Load() > before; gotDirect != wantDirect {
				t.Errorf("%d bytes, hint %d: direct I/O %v, want %v", size, hint, gotDirect, wantDirect)
			}
			got, err := os.ReadFile(r.ObjectPath(c.SHA256))
			if err != nil || !bytes.Equal(got, content) {
				t.Fatalf("%d bytes, hint %d: object holds %d bytes (%v)", size, hint, len(got), err)
			}
		}
	}
}

// A buffer that is not aligned, or not whole blocks, is written the
// ordinary way from there on, and the file still gets every byte in order.
func TestDirectWriteUnalignedFallsBack(t *testing.T) {
	dir := t.TempDir()
	buf := alignedBuf(4 * directAlign)
	copy(buf, randomBytes(t, len(buf)))
	tests := []struct {
		name   string
		writes [][]byte
	}{
		{"whole blocks then a tail", [][]byte{buf[:2*directAlign], buf[:100]}},
		{"unaligned start", [][]byte{buf[1 : 2*directAlign+1], buf[:directAlign]}},
		{"a tail then whole blocks", [][]byte{buf[:directAlign+7], buf[:2*directAlign]}},
		{"empty write first", [][]byte{buf[:0], buf[:directAlign]}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "f"+string(rune('a'+i)))
			f, err := createExcl(path, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.writeAround(directMin)
			var want []byte
			for _, w := range tc.writes {
				if n, err := f.Write(w); err != nil || n != len(w) {
					t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
				}
				want = append(want, w...)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("file holds %d bytes (%v), want the %d written in order", len(got), err, len(want))
			}
		})
	}
}
