package layout

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

func TestCopyFile(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (3<<20)/16+7) // several copy buffers, not a multiple
	tests := []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"small", []byte("a package")},
		{"larger than the copy buffer", big},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRoot(t)
			src := filepath.Join(t.TempDir(), "src.pkg")
			if err := os.WriteFile(src, tc.content, 0o644); err != nil {
				t.Fatal(err)
			}
			var progress int64
			c, err := r.CopyFile(src, CopyOptions{Progress: func(n int64) { progress += n }})
			want := digest.Sum(tc.content)
			if err != nil || c.SHA256 != want || c.Size != int64(len(tc.content)) || !c.New {
				t.Fatalf("CopyFile = %+v, %v; want %s, %d bytes, new", c, err, want, len(tc.content))
			}
			if progress != int64(len(tc.content)) {
				t.Errorf("progress reported %d bytes, want %d", progress, len(tc.content))
			}
			got, err := os.ReadFile(r.ObjectPath(want))
			if err != nil || !bytes.Equal(got, tc.content) {
				t.Fatalf("object holds %d bytes (%v), want the source's %d", len(got), err, len(tc.content))
			}
			if fi, err := os.Stat(r.ObjectPath(want)); err != nil || fi.Mode().Perm() != 0o444 {
				t.Errorf("object mode = %v (%v), want 0444", fi.Mode(), err)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers: %v", l)
			}
			if m := markers(t, r); len(m) != 1 {
				t.Errorf("markers = %v, want one: the object is not synced yet", m)
			}
			// Again: present, the copy is dropped and the object kept.
			c, err = r.CopyFile(src, CopyOptions{})
			if err != nil || c.SHA256 != want || c.New {
				t.Fatalf("second CopyFile = %+v, %v; want %s, not new", c, err, want)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers after the second copy: %v", l)
			}
		})
	}
}

func TestCopyFileCheckRefusesKeepsNothing(t *testing.T) {
	r := newRoot(t)
	src := filepath.Join(t.TempDir(), "src.pkg")
	content := []byte("bytes that changed while read")
	if err := os.WriteFile(src, content, 0o644); err != nil {
		t.Fatal(err)
	}
	errChanged := errors.New("changed")
	var checked int64 = -1
	_, err := r.CopyFile(src, CopyOptions{Check: func(n int64) error { checked = n; return errChanged }})
	if !errors.Is(err, errChanged) {
		t.Fatalf("CopyFile = %v, want the Check's error", err)
	}
	if checked != int64(len(content)) {
		t.Errorf("Check got %d bytes, want %d", checked, len(content))
	}
	if ok, _ := r.HasObject(digest.Sum(content)); ok {
		t.Error("a refused copy was stored")
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("leftovers: %v", l)
	}
}

func TestCopyFileReadErrorKeepsNothing(t *testing.T) {
	r := newRoot(t)
	_, err := r.CopyFile(filepath.Join(t.TempDir(), "missing.pkg"), CopyOptions{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CopyFile of a missing file = %v, want fs.ErrNotExist", err)
	}
	errRead := errors.New("disk error")
	open := func(string) (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("half a pack"), failReader{errRead})), nil
	}
	if _, err := r.CopyFile("src.pkg", CopyOptions{Open: open}); !errors.Is(err, errRead) {
		t.Fatalf("CopyFile with a read error = %v, want it", err)
	}
	if ok, _ := r.HasObject(digest.Sum([]byte("half a pack"))); ok {
		t.Error("a partial copy was stored")
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("leftovers: %v", l)
	}
}

type failReader struct{ err error }

func (e failReader) Read([]byte) (int, error) { return 0, e.err }

func TestCopyFileConcurrentSameContent(t *testing.T) {
	r := newRoot(t)
	content := []byte("the same package, twice")
	var srcs []string
	for range 8 {
		p := filepath.Join(t.TempDir(), "src.pkg")
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, p)
	}
	var wg sync.WaitGroup
	news := make([]bool, len(srcs))
	errs := make([]error, len(srcs))
	for i, p := range srcs {
		wg.Go(func() {
			c, err := r.CopyFile(p, CopyOptions{})
			news[i], errs[i] = c.New, err
		})
	}
	wg.Wait()
	n := 0
	for i := range srcs {
		if errs[i] != nil {
			t.Fatalf("CopyFile %d: %v", i, errs[i])
		}
		if news[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d copies linked the object, want exactly 1", n)
	}
	if got, err := os.ReadFile(r.ObjectPath(digest.Sum(content))); err != nil || !bytes.Equal(got, content) {
		t.Errorf("object = %q, %v", got, err)
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("leftovers: %v", l)
	}
}
