package atomicfile

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
)

// Tests that set FaultHook do not run in parallel: it is a package variable.

// setFault makes FaultHook fail at step for the rest of the test.
func setFault(t *testing.T, step string) error {
	t.Helper()
	injected := errors.New("injected fault at " + step)
	old := FaultHook
	FaultHook = func(s string) error {
		if s == step {
			return injected
		}
		return nil
	}
	t.Cleanup(func() { FaultHook = old })
	return injected
}

// names returns the base names in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// noTemp fails the test if dir holds a temp file of this package.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	for _, n := range names(t, dir) {
		if IsTemp(n) {
			t.Errorf("temp file %s left in %s", n, dir)
		}
	}
}

func TestCreateCommit(t *testing.T) {
	for _, tt := range []struct {
		name string
		perm os.FileMode
	}{
		{"read-only object", 0o444},
		{"private key", 0o600},
		{"public file", 0o644},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			f, err := Create(path, tt.perm)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Abort()
			if f.Path() != path {
				t.Errorf("Path() = %q, want %q", f.Path(), path)
			}
			if _, err := f.WriteString("content"); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Lstat(%s) before Commit = %v, want not exist", path, err)
			}
			if err := f.Commit(); err != nil {
				t.Fatalf("Commit() = %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != "content" {
				t.Errorf("ReadFile after Commit = %q, %v, want %q", got, err, "content")
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != tt.perm {
				t.Errorf("mode after Commit = %v, want %v", fi.Mode().Perm(), tt.perm)
			}
			noTemp(t, dir)
			if err := f.Commit(); err == nil {
				t.Error("second Commit() = nil, want an error")
			}
		})
	}
}

func TestAbortRemovesTempAndKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("new"); err != nil {
		t.Fatal(err)
	}
	f.Abort()
	f.Abort() // twice is harmless
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("content after Abort = %q, want %q", got, "old")
	}
	noTemp(t, dir)
	if err := f.Commit(); err == nil {
		t.Error("Commit() after Abort = nil, want an error")
	}
}

func TestCommitReplacesExisting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old content, longer"), 0o444); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("new"), 0o444); err != nil {
		t.Fatalf("WriteFile over a read-only file = %v", err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new" {
		t.Errorf("content = %q, want %q", got, "new")
	}
	noTemp(t, dir)
}

func TestFaultLeavesOldFileAndNoTemp(t *testing.T) {
	for _, step := range []string{"sync", "rename"} {
		t.Run(step, func(t *testing.T) {
			injected := setFault(t, step)
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}

			err := WriteFile(path, []byte("new"), 0o644)
			if !errors.Is(err, injected) {
				t.Errorf("WriteFile with fault at %s = %v, want %v", step, err, injected)
			}
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("content after fault at %s = %q, want %q", step, got, "old")
			}
			noTemp(t, dir)

			f, err := Create(path, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Commit(); !errors.Is(err, injected) {
				t.Errorf("Commit with fault at %s = %v, want %v", step, err, injected)
			}
			f.Abort() // after a failed Commit: must not fail or panic
			noTemp(t, dir)
			if got, _ := os.ReadFile(path); string(got) != "old" {
				t.Errorf("content after fault at %s = %q, want %q", step, got, "old")
			}
		})
	}
}

func TestFaultOnNewFileLeavesNothing(t *testing.T) {
	setFault(t, "rename")
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644); err == nil {
		t.Fatal("WriteFile with fault = nil, want error")
	}
	if n := names(t, dir); len(n) != 0 {
		t.Errorf("dir after failed WriteFile holds %q, want nothing", n)
	}
}

func TestWriteFrom(t *testing.T) {
	t.Run("copies and commits", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		n, err := WriteFrom(path, strings.NewReader("hello"), 0o444)
		if err != nil || n != 5 {
			t.Fatalf("WriteFrom = %d, %v, want 5, nil", n, err)
		}
		if got, _ := os.ReadFile(path); string(got) != "hello" {
			t.Errorf("content = %q, want %q", got, "hello")
		}
	})
	t.Run("reader failure keeps old file", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "f")
		if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("upstream died")
		r := iotest.TimeoutReader(bytes.NewReader(bytes.Repeat([]byte("x"), 100))) // second Read fails
		_, err := WriteFrom(path, &failAfter{r: r, err: boom}, 0o644)
		if err == nil {
			t.Fatal("WriteFrom(failing reader) = nil, want error")
		}
		if got, _ := os.ReadFile(path); string(got) != "old" {
			t.Errorf("content after failed WriteFrom = %q, want %q", got, "old")
		}
		noTemp(t, dir)
	})
}

// failAfter returns err once r reports any error.
type failAfter struct {
	r   interface{ Read([]byte) (int, error) }
	err error
}

func (f *failAfter) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err != nil {
		return n, f.err
	}
	return n, nil
}

func TestCreateInMissingDir(t *testing.T) {
	t.Parallel()
	if _, err := Create(filepath.Join(t.TempDir(), "no", "f"), 0o644); err == nil {
		t.Error("Create in a missing directory = nil, want error")
	}
}

func TestIsTemp(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		want bool
	}{
		{".tmp-f.123", true},
		{".tmp-current.1-2-3", true},
		{".tmp-", false},
		{"tmp-f", false},
		{"f", false},
		{"", false},
	} {
		if got := IsTemp(tt.name); got != tt.want {
			t.Errorf("IsTemp(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
	dir := t.TempDir()
	f, err := Create(filepath.Join(dir, "x"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if base := filepath.Base(f.Name()); !IsTemp(base) {
		t.Errorf("IsTemp(%q) of Create's temp file = false, want true", base)
	}
}

func TestReplaceSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	for _, target := range []string{"20261124T000000Z", "20261125T000000Z", "20261125T000000Z"} {
		if err := ReplaceSymlink(target, link); err != nil {
			t.Fatalf("ReplaceSymlink(%q) = %v", target, err)
		}
		if got, err := os.Readlink(link); err != nil || got != target {
			t.Errorf("Readlink after ReplaceSymlink(%q) = %q, %v", target, got, err)
		}
	}
	noTemp(t, dir)
}

func TestReplaceSymlinkFaultKeepsOldLink(t *testing.T) {
	injected := setFault(t, "symlink-rename")
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	if err := os.Symlink("old", link); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSymlink("new", link); !errors.Is(err, injected) {
		t.Errorf("ReplaceSymlink with fault = %v, want %v", err, injected)
	}
	if got, _ := os.Readlink(link); got != "old" {
		t.Errorf("link after fault = %q, want %q", got, "old")
	}
	noTemp(t, dir)
}

func TestReplaceSymlinkOverDirectoryFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	link := filepath.Join(dir, "current")
	if err := os.Mkdir(link, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(link, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReplaceSymlink("new", link); err == nil {
		t.Error("ReplaceSymlink over a non-empty directory = nil, want error")
	}
	noTemp(t, dir)
}

// TestReplaceSymlinkReadersNeverSeeMissingLink swaps a symlink back and forth
// while readers resolve it in a loop: every resolution must find one of the
// two targets, never "no such file". The swapper runs a fixed number of
// swaps; the readers stop when it is done.
func TestReplaceSymlinkReadersNeverSeeMissingLink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, d, "file"), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "current")
	if err := ReplaceSymlink("a", link); err != nil {
		t.Fatal(err)
	}

	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for !done.Load() {
				got, err := os.ReadFile(filepath.Join(link, "file"))
				if err != nil {
					errs <- err
					return
				}
				if s := string(got); s != "a" && s != "b" {
					errs <- errors.New("read " + s)
					return
				}
				reads.Add(1)
			}
		})
	}
	const swaps = 300
	for i := range swaps {
		target := "a"
		if i%2 == 0 {
			target = "b"
		}
		if err := ReplaceSymlink(target, link); err != nil {
			t.Errorf("ReplaceSymlink #%d = %v", i, err)
			break
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("reader during swaps: %v", err)
	}
	t.Logf("%d reads during %d swaps", reads.Load(), swaps)
	noTemp(t, dir)
}

func TestSyncDir(t *testing.T) {
	t.Parallel()
	if err := SyncDir(t.TempDir()); err != nil {
		t.Errorf("SyncDir(temp dir) = %v", err)
	}
	if err := SyncDir(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("SyncDir(missing) = nil, want error")
	}
}
