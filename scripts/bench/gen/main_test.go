package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true},
		{"512", 512, true},
		{"512B", 512, true},
		{"4KiB", 4096, true},
		{"1.5MiB", 3 << 19, true},
		{"3GiB", 3 << 30, true},
		{"2M", 2 << 20, true},
		{"", 0, false},
		{"-1KiB", 0, false},
		{"lots", 0, false},
	} {
		got, err := parseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// gen runs the command and decodes its JSON result.
func gen(t *testing.T, args ...string) output {
	t.Helper()
	var buf bytes.Buffer
	if err := run(t.Context(), args, &buf); err != nil {
		t.Fatalf("gen %v: %v", args, err)
	}
	var out output
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		t.Fatalf("gen %v: output %q: %v", args, buf.Bytes(), err)
	}
	return out
}

// onDisk counts the files under dir and their bytes.
func onDisk(t *testing.T, dir string) (files int, size int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		files++
		size += fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}

func TestTreeAndMutate(t *testing.T) {
	dir := t.TempDir()
	out := gen(t, "tree", "-dir", dir, "-subdir", "small", "-files", "40", "-bytes", "40KiB", "-equal", "-seed", "7")
	if out.Files != 40 || out.Bytes != 40<<10 {
		t.Fatalf("tree reported %d files, %d bytes; want 40, %d", out.Files, out.Bytes, 40<<10)
	}
	if n, b := onDisk(t, filepath.Join(dir, "small")); n != 40 || b != 40<<10 {
		t.Fatalf("tree wrote %d files, %d bytes", n, b)
	}
	before, err := os.ReadFile(filepath.Join(dir, "small", "pkg000000-1.0.pkg"))
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 1024 {
		t.Errorf("-equal: first file is %d bytes, want 1024", len(before))
	}

	m := gen(t, "mutate", "-dir", dir, "-fraction", "0.25", "-seed", "3")
	if m.Files != 10 || len(m.Paths) != 10 {
		t.Fatalf("mutate 25%% of 40 files: reported %d files, %d paths", m.Files, len(m.Paths))
	}
	for _, p := range m.Paths {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			t.Errorf("mutate reported %s: %v", p, err)
		}
	}
	if n, _ := onDisk(t, dir); n != 40 {
		t.Errorf("after mutate: %d files, want 40", n)
	}
}

func TestRepo(t *testing.T) {
	dir := t.TempDir()
	out := gen(t, "repo", "-dir", dir, "-packages", "12", "-bytes", "256KiB", "-seed", "5")
	if len(out.Paths) != 12 {
		t.Fatalf("repo: %d package paths, want 12", len(out.Paths))
	}
	for _, p := range append([]string{"meta.conf", "packagesite.pkg", "Latest/pkg.pkg"}, out.Paths...) {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			t.Errorf("repo: %v", err)
		}
	}
	if n, b := onDisk(t, dir); n != out.Files || b != out.Bytes {
		t.Errorf("repo reported %d files, %d bytes; disk has %d, %d", out.Files, out.Bytes, n, b)
	}
	bump := gen(t, "bump", "-dir", dir, "-count", "3", "-seed", "9")
	if len(bump.Paths) != 3 {
		t.Errorf("bump -count 3: %d new paths", len(bump.Paths))
	}
	for _, p := range bump.Paths {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(p))); err != nil {
			t.Errorf("bump: %v", err)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"tree"},
		{"fly", "-dir", t.TempDir()},
	} {
		if err := run(t.Context(), args, new(bytes.Buffer)); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("gen %q: err = %v, want a usage error", args, err)
		}
	}
	if err := run(t.Context(), []string{"tree", "-dir", t.TempDir(), "-bytes", "huge"}, new(bytes.Buffer)); err == nil {
		t.Error("gen tree -bytes huge: no error")
	}
}
