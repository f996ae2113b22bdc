package sampleset

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// hashTree returns path → sha256 of every regular file under root.
func hashTree(t *testing.T, root string) map[string]digest.SHA256 {
	t.Helper()
	paths, _, err := Files(root)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]digest.SHA256, len(paths))
	for _, p := range paths {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		m[p] = digest.Sum(b)
	}
	return m
}

func TestTreeFilesSumExactly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		files int
		bytes int64
	}{
		{"default", 0, 0},
		{"small", 10, 1000},
		{"fewer bytes than files", 100, 7},
		{"one file", 1, 12345},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := TreeConfig{Seed: 1, Files: tc.files, TotalBytes: tc.bytes}
			files := TreeFiles(cfg)
			want := cfg.withDefaults()
			var sum int64
			for _, f := range files {
				sum += f.Size
			}
			if len(files) != want.Files || sum != want.TotalBytes {
				t.Errorf("TreeFiles(%+v) = %d files, %d bytes; want %d, %d", cfg, len(files), sum, want.Files, want.TotalBytes)
			}
		})
	}
}

func TestTreeEqualSizes(t *testing.T) {
	t.Parallel()
	for _, f := range TreeFiles(TreeConfig{Files: 100, TotalBytes: 100 * 4096, EqualSizes: true, Dir: "small"}) {
		if f.Size != 4096 || !strings.HasPrefix(f.Path, "small/") {
			t.Errorf("EqualSizes file %+v, want 4096 bytes under small/", f)
		}
	}
}

func TestTreeDefaultSizesLookLikePackages(t *testing.T) {
	t.Parallel()
	files := TreeFiles(TreeConfig{Seed: 7})
	sizes := make([]int64, len(files))
	for i, f := range files {
		sizes[i] = f.Size
	}
	slices.Sort(sizes)
	median, p99 := sizes[len(sizes)/2], sizes[len(sizes)*99/100]
	if median < 20*KiB || median > 200*KiB || p99 < 512*KiB || p99 > 10*MiB {
		t.Errorf("median %d, p99 %d bytes: want a median of tens of KiB and a p99 near 1 MiB", median, p99)
	}
}

func TestTreeIsDeterministic(t *testing.T) {
	t.Parallel()
	cfg := TreeConfig{Seed: 42, Files: 50, TotalBytes: 3 * MiB, BufferBytes: 4096}
	a, b, c := t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		st, err := Tree(t.Context(), dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if st != (Stats{Files: 50, Bytes: 3 * MiB}) {
			t.Errorf("Tree stats = %+v, want 50 files, %d bytes", st, 3*MiB)
		}
	}
	cfg.Seed = 43
	if _, err := Tree(t.Context(), c, cfg); err != nil {
		t.Fatal(err)
	}
	ha, hb, hc := hashTree(t, a), hashTree(t, b), hashTree(t, c)
	if !maps.Equal(ha, hb) {
		t.Error("two trees from the same seed differ")
	}
	distinct := map[digest.SHA256]bool{}
	for p, h := range ha {
		distinct[h] = true
		if hc[p] == h {
			t.Errorf("%s has the same bytes under seeds 42 and 43", p)
		}
	}
	if len(distinct) != 50 {
		t.Errorf("%d distinct contents among 50 files, want 50", len(distinct))
	}
}

func TestMutateChangesFraction(t *testing.T) {
	t.Parallel()
	cfg := TreeConfig{Seed: 1, Files: 200, TotalBytes: 2 * MiB}
	a, b := t.TempDir(), t.TempDir()
	for _, dir := range []string{a, b} {
		if _, err := Tree(t.Context(), dir, cfg); err != nil {
			t.Fatal(err)
		}
	}
	before := hashTree(t, a)
	sizes := map[string]int64{}
	for _, f := range TreeFiles(cfg) {
		sizes[f.Path] = f.Size
	}
	changedA, st, err := Mutate(a, 0.05, 9)
	if err != nil {
		t.Fatal(err)
	}
	changedB, _, err := Mutate(b, 0.05, 9)
	if err != nil {
		t.Fatal(err)
	}
	if len(changedA) != 10 || st.Files != 10 {
		t.Fatalf("Mutate(0.05) of 200 files changed %d (stats %+v), want 10", len(changedA), st)
	}
	if !slices.Equal(changedA, changedB) {
		t.Errorf("same seed changed %v, then %v", changedA, changedB)
	}
	after := hashTree(t, a)
	if !maps.Equal(after, hashTree(t, b)) {
		t.Error("same seed gave different bytes")
	}
	var bytes int64
	for p, h := range after {
		isChanged := slices.Contains(changedA, p)
		if (h != before[p]) != isChanged {
			t.Errorf("%s: content changed = %v, listed as changed = %v", p, h != before[p], isChanged)
		}
		info, err := os.Stat(filepath.Join(a, p))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != sizes[p] {
			t.Errorf("%s: size %d after Mutate, want %d", p, info.Size(), sizes[p])
		}
		if isChanged {
			bytes += sizes[p]
		}
	}
	if len(after) != len(before) {
		t.Errorf("%d files after Mutate, want %d (no temp file left)", len(after), len(before))
	}
	if st.Bytes != bytes {
		t.Errorf("Mutate stats bytes = %d, want %d", st.Bytes, bytes)
	}
}

func TestMutateRefusesBadFraction(t *testing.T) {
	t.Parallel()
	for _, f := range []float64{-0.1, 1.5} {
		if _, _, err := Mutate(t.TempDir(), f, 1); err == nil {
			t.Errorf("Mutate(fraction %v) = nil error, want one", f)
		}
	}
}

func TestRepo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		hashed bool
	}{
		{"plain", false},
		{"hashed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := RepoConfig{Seed: 3, Packages: 40, TotalBytes: 4 * MiB, Hashed: tc.hashed}
			dir := t.TempDir()
			pkgs, st, err := Repo(dir, cfg)
			if err != nil {
				t.Fatal(err)
			}
			wantFiles := 40 + 5 + 1 // packages, catalogues, Latest/pkg.pkg
			if tc.hashed {
				wantFiles += 40
			}
			if len(pkgs) != 40 || st.Files != wantFiles {
				t.Errorf("Repo wrote %d packages, %d files; want 40, %d", len(pkgs), st.Files, wantFiles)
			}
			if st.Bytes < 3*MiB || st.Bytes > 6*MiB*(1+btoi(tc.hashed)) {
				t.Errorf("Repo wrote %d bytes, want about 4 MiB of packages", st.Bytes)
			}
			files := hashTree(t, dir)
			if len(files) != st.Files {
				t.Errorf("%d files on disk, stats say %d", len(files), st.Files)
			}
			var plus, tilde bool
			for _, p := range pkgs {
				plus = plus || strings.Contains(p.Name, "+")
				tilde = tilde || strings.Contains(p.Version, "~")
				for _, rel := range []string{p.Path, p.RepoPath} {
					if files[rel] != p.SHA256 {
						t.Errorf("%s: sha256 %s on disk, catalogue says %s", rel, files[rel], p.SHA256)
					}
				}
				if tc.hashed != strings.HasPrefix(p.RepoPath, "All/Hashed/") {
					t.Errorf("%s: repopath %q with Hashed = %v", p.Name, p.RepoPath, tc.hashed)
				}
				if p.Name == "pkg" && files[LatestPkg] != p.SHA256 {
					t.Errorf("Latest/pkg.pkg is not the pkg package")
				}
			}
			if !plus || !tilde {
				t.Errorf("names with '+': %v, versions with '~': %v; want both", plus, tilde)
			}
			for _, rel := range []string{MetaConf, PackagesitePkg, PackagesiteTzst, DataPkg, DataTzst} {
				if _, ok := files[rel]; !ok {
					t.Errorf("%s missing", rel)
				}
			}
			got, err := ReadCatalogue(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, pkgs) {
				t.Errorf("ReadCatalogue = %d packages, differing from what Repo returned", len(got))
			}
			again := t.TempDir()
			if _, _, err := Repo(again, cfg); err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(files, hashTree(t, again)) {
				t.Error("two repositories from the same config differ")
			}
		})
	}
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func TestBumpVersions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before, _, err := Repo(dir, RepoConfig{Seed: 5, Packages: 30, TotalBytes: 2 * MiB, Hashed: true})
	if err != nil {
		t.Fatal(err)
	}
	oldFiles := hashTree(t, dir)
	changes, st, err := BumpVersions(dir, 4, 11)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 4 || st.Files != 4*2+5 {
		t.Fatalf("BumpVersions(4) = %d changes, %d files written; want 4, 13", len(changes), st.Files)
	}
	after, err := ReadCatalogue(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("%d packages after, %d before", len(after), len(before))
	}
	files := hashTree(t, dir)
	if len(files) != len(oldFiles) {
		t.Errorf("%d files after, %d before: old versions must be removed", len(files), len(oldFiles))
	}
	byName := map[string]Package{}
	for _, p := range after {
		byName[p.Name] = p
	}
	for _, c := range changes {
		if c.Name == "pkg" {
			t.Error("pkg was bumped")
		}
		if _, ok := files[c.OldPath]; ok {
			t.Errorf("%s still on disk", c.OldPath)
		}
		p := byName[c.Name]
		if p.RepoPath != c.NewPath || p.Version != c.NewVersion || files[c.NewPath] != p.SHA256 {
			t.Errorf("%s: catalogue %s %s, change %s %s, disk sha256 %s", c.Name, p.RepoPath, p.Version, c.NewPath, c.NewVersion, files[c.NewPath])
		}
	}
	var unchanged int
	for _, p := range before {
		if files[p.RepoPath] == p.SHA256 {
			unchanged++
		}
	}
	if unchanged != 26 {
		t.Errorf("%d packages untouched, want 26", unchanged)
	}
}

func TestBumpRevision(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"1.2", "1.2_1"},
		{"1.2_1", "1.2_2"},
		{"1.2_9,1", "1.2_10,1"},
		{"2.0~rc1,2", "2.0~rc1_1,2"},
	} {
		if got := bumpRevision(tc.in); got != tc.want {
			t.Errorf("bumpRevision(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func BenchmarkTree(b *testing.B) {
	dir := b.TempDir()
	cfg := TreeConfig{Seed: 1, Files: 100, TotalBytes: 64 * MiB}
	b.SetBytes(cfg.TotalBytes)
	for b.Loop() {
		if _, err := Tree(b.Context(), dir, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
