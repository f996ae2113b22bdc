package publish

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
)

func testConfig(t testing.TB) (Config, string) {
	s, pub := newKey(t)
	return Config{Set: testSet, Signer: s, Now: clock()}, pub
}

func TestPublishLocalRefusesHostileSource(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, src string)
	}{
		{"backslash", func(t *testing.T, src string) { writeTree(t, src, map[string]string{`All/a\b.pkg`: "x"}) }},
		{"newline", func(t *testing.T, src string) { writeTree(t, src, map[string]string{"All/a\nb.pkg": "x"}) }},
		{"control byte", func(t *testing.T, src string) { writeTree(t, src, map[string]string{"All/a\x01.pkg": "x"}) }},
		{"reserved .pkgcdn", func(t *testing.T, src string) { writeTree(t, src, map[string]string{".pkgcdn/manifest": "x"}) }},
		{"absolute symlink outside", func(t *testing.T, src string) { symlink(t, outside, filepath.Join(src, "All/evil.pkg")) }},
		{"relative symlink outside", func(t *testing.T, src string) {
			rel, err := filepath.Rel(filepath.Join(src, "All"), outside)
			if err != nil {
				t.Fatal(err)
			}
			symlink(t, rel, filepath.Join(src, "All/up"))
		}},
		{"symlink to /dev/null", func(t *testing.T, src string) { symlink(t, "/dev/null", filepath.Join(src, "All/null")) }},
		{"dangling symlink", func(t *testing.T, src string) { symlink(t, "nowhere", filepath.Join(src, "All/dangling")) }},
		{"symlink to directory", func(t *testing.T, src string) { symlink(t, ".", filepath.Join(src, "All/loop")) }},
		{"fifo", func(t *testing.T, src string) {
			if err := syscall.Mkfifo(filepath.Join(src, "All/fifo"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"socket", func(t *testing.T, src string) {
			// A short path: sun_path holds about 100 bytes.
			dir, err := os.MkdirTemp("", "s")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			l, err := net.Listen("unix", filepath.Join(dir, "s"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			if err := os.Rename(filepath.Join(dir, "s"), filepath.Join(src, "All/sock")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := t.TempDir()
			writeTree(t, src, map[string]string{"All/good.pkg": "good", "meta.conf": "meta"})
			tt.setup(t, src)
			cfg, _ := testConfig(t)
			root := newRoot(t)
			_, err := PublishLocal(t.Context(), cfg, root, src)
			if !errors.Is(err, ErrBadSource) {
				t.Fatalf("PublishLocal = %v, want ErrBadSource", err)
			}
			t.Log(err)
			for _, d := range []string{"objects", "sets", "staging"} {
				if n := countFiles(t, filepath.Join(root.Dir, d)); n != 0 {
					t.Errorf("%s holds %d files after a refused publish", d, n)
				}
			}
			if _, _, err := root.Sets(); !errors.Is(err, layout.ErrNotFound) {
				t.Errorf("SETS after a refused publish: %v", err)
			}
		})
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func TestScanFollowsSymlinkInsideTree(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"All/pkg-2.0.pkg": "pkg2", "meta.conf": "m"})
	symlink(t, "../All/pkg-2.0.pkg", filepath.Join(src, "Latest/pkg.pkg"))
	files, err := Scan(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Path)
	}
	if want := "All/pkg-2.0.pkg Latest/pkg.pkg meta.conf"; strings.Join(got, " ") != want {
		t.Fatalf("Scan = %v, want %s", got, want)
	}
	if _, err := Hash(t.Context(), files, HashConfig{}); err != nil {
		t.Fatal(err)
	}
	if files[0].SHA256 != files[1].SHA256 || files[1].Size != 4 {
		t.Errorf("symlink not published with its target's bytes: %+v", files[:2])
	}
}

func TestScanEmptyDirectoriesIgnoredEmptyTreeRefused(t *testing.T) {
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "a/b/c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Scan(t.Context(), src); !errors.Is(err, ErrEmptySource) {
		t.Fatalf("Scan(empty dirs) = %v, want ErrEmptySource", err)
	}
	writeTree(t, src, map[string]string{"x": "1"})
	files, err := Scan(t.Context(), src)
	if err != nil || len(files) != 1 || files[0].Path != "x" {
		t.Fatalf("Scan = %v, %v; want only x", files, err)
	}
}

// changingOpener rewrites one file right after opening it, as a build still
// writing its output would.
func changingOpener(victim string) func(string) (io.ReadCloser, error) {
	return func(name string) (io.ReadCloser, error) {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		if filepath.Base(name) == victim {
			if err := os.WriteFile(name, []byte("rebuilt with other bytes"), 0o644); err != nil {
				return nil, err
			}
		}
		return f, nil
	}
}

func TestSourceChangingWhileHashedAbortsPublish(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"All/a.pkg": "a1", "All/b.pkg": "b1"})
	cfg, pub := testConfig(t)
	root := newRoot(t)
	if _, err := PublishLocal(t.Context(), cfg, root, src); err != nil {
		t.Fatal(err)
	}
	before, liveBefore := snapshot(t, root, testSet)
	writeTree(t, src, map[string]string{"All/b.pkg": "b2"})
	cfg.open = changingOpener("b.pkg")
	_, err := PublishLocal(t.Context(), cfg, root, src)
	var ce *ChangedError
	if !errors.Is(err, ErrSourceChanged) || !errors.As(err, &ce) || ce.Path != "All/b.pkg" {
		t.Fatalf("PublishLocal = %v, want a *ChangedError naming All/b.pkg", err)
	}
	after, liveAfter := snapshot(t, root, testSet)
	if before != after || liveBefore != liveAfter {
		t.Errorf("live set or SETS changed by an aborted publish: %s -> %s", liveBefore, liveAfter)
	}
	checkConsistent(t, root, testSet, pub)
}

func TestSourceChangingAfterHashAbortsCopy(t *testing.T) {
	// The file changed between hashing and copying, keeping its size: the
	// copy is verified against the hash, so the change is caught there.
	src := t.TempDir()
	writeTree(t, src, map[string]string{"All/a.pkg": "bbbb"})
	cfg, _ := testConfig(t)
	root := newRoot(t)
	items := []Item{{Path: "All/a.pkg", Size: 4, SHA256: digest.Sum([]byte("aaaa")), Src: filepath.Join(src, "All/a.pkg")}}
	st, err := readLocal(root, testSet)
	if err != nil {
		t.Fatal(err)
	}
	_, err = commitLocal(t.Context(), &cfg, root, items, st, nil, nil)
	var ce *ChangedError
	if !errors.As(err, &ce) || ce.Path != "All/a.pkg" {
		t.Fatalf("commitLocal = %v, want a *ChangedError naming All/a.pkg", err)
	}
	if _, err := root.Live(testSet); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("a set went live: %v", err)
	}
	if ok, _ := root.HasObject(items[0].SHA256); ok {
		t.Error("an object with the wrong bytes was stored")
	}
}

func TestSourceChangingBeforeCopyAbortsPublish(t *testing.T) {
	// A file of the live set's size, unknown to the hash cache, is hashed
	// first and copied only if the root lacks its object. Hashing sees
	// "aaaa" (the build's bytes), the copy that overlaps the hashing finds
	// "bbbb": the copy's verification names the file.
	src := t.TempDir()
	files := map[string]string{"All/a.pkg": "cccc"}
	for i := range 50 {
		files[fmt.Sprintf("All/p%02d.pkg", i)] = fmt.Sprint(i)
	}
	writeTree(t, src, files)
	cfg, _ := testConfig(t)
	cfg.Jobs = 2
	root := newRoot(t)
	if _, err := PublishLocal(t.Context(), cfg, root, src); err != nil {
		t.Fatal(err)
	}
	before, liveBefore := snapshot(t, root, testSet)
	writeTree(t, src, map[string]string{"All/a.pkg": "bbbb"})
	cfg.open = func(name string) (io.ReadCloser, error) {
		if filepath.Base(name) == "a.pkg" {
			return io.NopCloser(strings.NewReader("aaaa")), nil
		}
		return os.Open(name)
	}
	_, err := PublishLocal(t.Context(), cfg, root, src)
	var ce *ChangedError
	if !errors.As(err, &ce) || ce.Path != "All/a.pkg" {
		t.Fatalf("PublishLocal = %v, want a *ChangedError naming All/a.pkg", err)
	}
	if after, liveAfter := snapshot(t, root, testSet); before != after || liveBefore != liveAfter {
		t.Errorf("live set or SETS changed by an aborted publish: %s -> %s", liveBefore, liveAfter)
	}
	for _, content := range []string{"aaaa", "bbbb"} {
		if ok, _ := root.HasObject(digest.Sum([]byte(content))); ok {
			t.Errorf("object %q stored by an aborted publish", content)
		}
	}
}

func TestSourceChangingWhileCopiedAbortsPublish(t *testing.T) {
	// New files are stored while hashed, in one read (layout.CopyFile): a
	// file rewritten while read is refused before its object is linked.
	src := t.TempDir()
	files := map[string]string{"All/b.pkg": "b1"}
	for i := range 20 {
		files[fmt.Sprintf("All/p%02d.pkg", i)] = fmt.Sprint(i)
	}
	writeTree(t, src, files)
	cfg, _ := testConfig(t)
	cfg.open = changingOpener("b.pkg")
	root := newRoot(t)
	_, err := PublishLocal(t.Context(), cfg, root, src)
	var ce *ChangedError
	if !errors.Is(err, ErrSourceChanged) || !errors.As(err, &ce) || ce.Path != "All/b.pkg" {
		t.Fatalf("PublishLocal = %v, want a *ChangedError naming All/b.pkg", err)
	}
	if _, err := root.Live(testSet); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("a set went live: %v", err)
	}
	for _, content := range []string{"b1", "rebuilt with other bytes"} {
		if ok, _ := root.HasObject(digest.Sum([]byte(content))); ok {
			t.Errorf("object %q stored by an aborted publish", content)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(root.Dir, "staging")); err != nil || len(ents) != 0 {
		t.Errorf("staging/ after an aborted publish: %v, %v; want it empty", ents, err)
	}
}

func TestHashCacheUnchangedRepublishReadsNothing(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"All/a.pkg": "aaa", "All/b.pkg": "bbbb", "meta.conf": "m", "packagesite.pkg": "site"}
	writeTree(t, src, files)
	cfg, _ := testConfig(t)
	cfg.HashCache = filepath.Join(t.TempDir(), "cache", "hc")
	root := newRoot(t)
	var c1 countingOpener
	cfg.open = c1.open
	res1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := c1.total(); n != len(files) {
		t.Errorf("first publish opened %d files, want %d", n, len(files))
	}

	var c2 countingOpener
	cfg.open = c2.open
	res2, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if n, b := c2.total(); n != 0 || b != 0 {
		t.Errorf("unchanged republish opened %d files, read %d bytes; want none", n, b)
	}
	if res2.New || res2.ID != res1.ID || res2.Hash.Cached != len(files) {
		t.Errorf("unchanged republish = %+v, want no new set, %d cached", res2, len(files))
	}

	// One file rewritten: only it is read again.
	writeTree(t, src, map[string]string{"All/b.pkg": "BBBB"})
	var c3 countingOpener
	cfg.open = c3.open
	res3, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := c3.total(); n != 1 || c3.opens["b.pkg"] != 1 {
		t.Errorf("republish after one change opened %v, want b.pkg once", c3.opens)
	}
	if !res3.New || res3.Sent != 1 {
		t.Errorf("republish after one change = %+v, want a new set, 1 object sent", res3)
	}

	// A corrupt cache file costs reads, not correctness.
	if err := os.WriteFile(cfg.HashCache, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c4 countingOpener
	cfg.open = c4.open
	res4, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil || res4.New {
		t.Fatalf("publish with a corrupt cache = %+v, %v; want no change", res4, err)
	}
	if n, _ := c4.total(); n != len(files) {
		t.Errorf("corrupt cache: opened %d files, want %d", n, len(files))
	}
}

func TestRacyWindow(t *testing.T) {
	start := time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC)
	tests := []struct {
		name  string
		mtime time.Time
		want  bool
	}{
		{"fine timestamp an hour old", start.Add(-time.Hour + 123), false},
		{"fine timestamp 50 ms old", start.Add(-50*time.Millisecond + 7), true},
		{"fine timestamp 150 ms old", start.Add(-150*time.Millisecond + 7), false},
		{"fine timestamp after start", start.Add(5*time.Millisecond + 7), true},
		{"whole-second timestamp 1 s old", start.Add(-time.Second), true},
		{"whole-second timestamp 3 s old", start.Add(-3 * time.Second), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := racy(tt.mtime.UnixNano(), start); got != tt.want {
				t.Errorf("racy(%v, %v) = %v, want %v", tt.mtime, start, got, tt.want)
			}
		})
	}
}

func TestHashCacheDoesNotKeepRacyEntries(t *testing.T) {
	src := t.TempDir()
	// Written just now: a later write in the same timestamp tick could keep
	// size and mtime, so the entry must not be trusted next time.
	if err := os.WriteFile(filepath.Join(src, "fresh"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache, err := LoadHashCache(filepath.Join(t.TempDir(), "hc"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := Scan(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Hash(t.Context(), files, HashConfig{Cache: cache}); err != nil {
		t.Fatal(err)
	}
	if _, ok := cache.lookup("fresh", files[0].key); ok {
		t.Error("a file modified within the racy window was cached")
	}
}

func TestModifiedTimesAndRollback(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "a1", "b": "b1"})
	cfg, pub := testConfig(t)
	root := newRoot(t)
	r1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, src, map[string]string{"b": "b2", "c": "c2"})
	r2, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	m2 := checkConsistent(t, root, testSet, pub)
	if m2.ID != r2.ID || m2.Previous != r1.ID {
		t.Fatalf("live %s (previous %s), want %s (previous %s)", m2.ID, m2.Previous, r2.ID, r1.ID)
	}
	wantMod := map[string]setid.ID{"a": r1.ID, "b": r2.ID, "c": r2.ID}
	for _, e := range m2.Entries {
		if e.Modified != wantMod[e.Path] {
			t.Errorf("set 2: %s modified %s, want %s", e.Path, e.Modified, wantMod[e.Path])
		}
	}

	r3, err := Rollback(t.Context(), cfg, root, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	m3 := checkConsistent(t, root, testSet, pub)
	if !r3.New || !r3.ID.After(r2.ID) || m3.ID != r3.ID || m3.Previous != r2.ID {
		t.Fatalf("rollback = %+v, live %s; want a new ID after %s", r3, m3.ID, r2.ID)
	}
	// a never changed; b changed back: a new Modified time, or clients
	// holding b2 with If-Modified-Since would never fetch b1 again.
	wantMod = map[string]setid.ID{"a": r1.ID, "b": r3.ID}
	if len(m3.Entries) != 2 {
		t.Fatalf("rollback set has %d files, want 2", len(m3.Entries))
	}
	for _, e := range m3.Entries {
		if e.Modified != wantMod[e.Path] {
			t.Errorf("rollback: %s modified %s, want %s", e.Path, e.Modified, wantMod[e.Path])
		}
	}
	if got := contentOf(t, root, m3); got["a"] != "a1" || got["b"] != "b1" {
		t.Errorf("rollback content = %v, want a1 b1", got)
	}
}

func TestNoChangeRepublishCreatesNoSet(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1", "d/b": "2"})
	cfg, _ := testConfig(t)
	root := newRoot(t)
	r1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := snapshot(t, root, testSet)
	r2, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if r2.New || r2.ID != r1.ID || r2.Sent != 0 {
		t.Errorf("no-change republish = %+v, want the live ID %s and nothing sent", r2, r1.ID)
	}
	ids, err := root.SetIDs(testSet)
	if err != nil || len(ids) != 1 {
		t.Errorf("SetIDs = %v, %v; want one set", ids, err)
	}
	if after, _ := snapshot(t, root, testSet); after != before {
		t.Error("SETS rewritten by a no-change republish")
	}
}

func TestNoChangeRepublishRepairsStaleSETS(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1"})
	cfg, pub := testConfig(t)
	root := newRoot(t)
	if _, err := PublishLocal(t.Context(), cfg, root, src); err != nil {
		t.Fatal(err)
	}
	oldSets, oldSig, _ := root.Sets()
	writeTree(t, src, map[string]string{"a": "2"})
	r2, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	// The state of a Commit killed after swapping `current`, before SETS.
	for name, b := range map[string][]byte{"SETS": oldSets, "SETS.minisig": oldSig} {
		if err := os.WriteFile(filepath.Join(root.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r3, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if r3.ID != r2.ID {
		t.Errorf("rerun published %s, want the interrupted set %s completed", r3.ID, r2.ID)
	}
	checkConsistent(t, root, testSet, pub)
	data, _, _ := root.Sets()
	if !strings.Contains(string(data), " "+r2.ID.String()+" ") {
		t.Errorf("SETS not repaired:\n%s", data)
	}

	// Only the signature stale (killed between SETS and SETS.minisig).
	if err := os.WriteFile(filepath.Join(root.Dir, "SETS.minisig"), oldSig, 0o644); err != nil {
		t.Fatal(err)
	}
	r4, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil || r4.New || r4.ID != r2.ID {
		t.Fatalf("rerun = %+v, %v; want no new set", r4, err)
	}
	_, sig, _ := root.Sets()
	if string(sig) == string(oldSig) {
		t.Error("stale SETS.minisig not repaired")
	}
}

// countFiles counts the non-directories under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDefaultHashCachePath(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/var/cache/x")
	a, err := DefaultHashCachePath("/usr/ports/packages/All")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(a) != "/var/cache/x/pkgcdn" || !strings.Contains(filepath.Base(a), "usr_ports_packages_All") {
		t.Errorf("DefaultHashCachePath = %s, want under /var/cache/x/pkgcdn named after the tree", a)
	}
	b, _ := DefaultHashCachePath("/usr/ports/packages_All")
	if a == b {
		t.Errorf("two trees share the cache file %s", a)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/builder")
	if c, _ := DefaultHashCachePath("/x"); filepath.Dir(c) != "/home/builder/.cache/pkgcdn" {
		t.Errorf("without XDG_CACHE_HOME: %s, want under ~/.cache/pkgcdn", c)
	}
}

func TestProgressEventsAddUp(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "12345", "b": "1234567890", "c": "12345"})
	cfg, _ := testConfig(t)
	var mu sync.Mutex
	total := map[Stage]int64{}
	done := map[Stage]int64{}
	ends := map[Stage]int{}
	cfg.Progress = func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.Start:
			total[e.Stage] = e.Total
		case e.End:
			ends[e.Stage]++
		default:
			done[e.Stage] += e.N
		}
	}
	if _, err := PublishLocal(t.Context(), cfg, newRoot(t), src); err != nil {
		t.Fatal(err)
	}
	// Hashing reads 20 bytes; "a" and "c" are one object, so 15 are sent
	// (copies overlap hashing: their total is not known up front).
	for stage, want := range map[Stage][2]int64{StageHash: {20, 20}, StageSend: {0, 15}} {
		if total[stage] != want[0] || done[stage] != want[1] || ends[stage] != 1 {
			t.Errorf("stage %s: total %d, done %d, %d ends; want %d, %d, 1", stage, total[stage], done[stage], ends[stage], want[0], want[1])
		}
	}
}

func TestRefreshKeepsIDMovesExpiry(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"All/a.pkg": "a", "meta.conf": "m"})
	cfg, pub := testConfig(t)
	cfg.Valid = 48 * time.Hour
	root := newRoot(t)
	r1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	before := liveManifest(t, root, testSet, pub)
	// 47 hours later (the clock moves an hour per call): about to expire.
	now := r1.ID.Time().Add(47 * time.Hour)
	cfg.Now = func() time.Time { return now }
	cfg.Valid = 30 * 24 * time.Hour
	r2, err := Refresh(t.Context(), cfg, root)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != r1.ID {
		t.Fatalf("Refresh changed the set ID: %s -> %s", r1.ID, r2.ID)
	}
	after := checkConsistent(t, root, testSet, pub)
	if !after.Expires.Equal(now.Add(cfg.Valid)) || !after.Created.Equal(before.Created) || len(after.Entries) != 2 {
		t.Errorf("after refresh: created %v expires %v, %d files; want created %v, expires %v, 2 files",
			after.Created, after.Expires, len(after.Entries), before.Created, now.Add(cfg.Valid))
	}
	if ids, _ := root.SetIDs(testSet); len(ids) != 1 {
		t.Errorf("refresh made a set: %v", ids)
	}
	// The refreshed set is live and announced: an unchanged publish is a no-op.
	cfg.Now = func() time.Time { return now.Add(time.Hour) }
	r3, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil || r3.New || r3.ID != r1.ID {
		t.Errorf("publish after refresh = %+v, %v; want no new set", r3, err)
	}
}

func TestPublishAfterExpiryMakesNewSet(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1"})
	cfg, _ := testConfig(t)
	cfg.Valid = 2 * time.Hour // the test clock moves an hour per publish
	root := newRoot(t)
	r1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	start := r1.ID.Time()
	cfg.Now = func() time.Time { return start.Add(3 * time.Hour) }
	r2, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	if !r2.New || !r2.ID.After(r1.ID) {
		t.Errorf("unchanged publish over an expired live set = %+v, want a new set", r2)
	}
}

func TestRevertAfterInterruptedCommitReplacesLiveSet(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1"})
	cfg, pub := testConfig(t)
	root := newRoot(t)
	r1, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	oldSets, oldSig, _ := root.Sets()
	writeTree(t, src, map[string]string{"a": "2"})
	if _, err := PublishLocal(t.Context(), cfg, root, src); err != nil {
		t.Fatal(err)
	}
	// Killed after swapping `current`, before SETS; then the build is
	// reverted to the announced content.
	for name, b := range map[string][]byte{"SETS": oldSets, "SETS.minisig": oldSig} {
		if err := os.WriteFile(filepath.Join(root.Dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeTree(t, src, map[string]string{"a": "1"})
	r3, err := PublishLocal(t.Context(), cfg, root, src)
	if err != nil {
		t.Fatal(err)
	}
	m := checkConsistent(t, root, testSet, pub)
	if !r3.New || m.ID != r3.ID || contentOf(t, root, m)["a"] != "1" || m.Previous != r1.ID {
		t.Errorf("rerun = %+v, live %s (previous %s) with a=%q; want a new set with a=1 after %s",
			r3, m.ID, m.Previous, contentOf(t, root, m)["a"], r1.ID)
	}
}

func TestPublishLocalRefusesOverlappingRootAndSource(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"a": "1"})
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := layout.Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := testConfig(t)
	for _, src := range []string{dir, filepath.Join(dir, "root", "objects")} {
		if _, err := PublishLocal(t.Context(), cfg, root, src); !errors.Is(err, ErrConfig) {
			t.Errorf("PublishLocal(root %s, src %s) = %v, want ErrConfig", root.Dir, src, err)
		}
	}
}

func TestPublishLocalStagesWhileHashing(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{"meta.conf": "m"}
	for i := range 40 {
		files[fmt.Sprintf("All/p%02d.pkg", i)] = fmt.Sprint("package ", i)
	}
	writeTree(t, src, files)
	cfg, pub := testConfig(t)
	cfg.HashCache = filepath.Join(t.TempDir(), "hc")
	root := newRoot(t)
	staging := filepath.Join(root.Dir, "staging")
	for _, step := range []struct {
		name   string
		change map[string]string
		new    bool
	}{
		{"first publish", nil, true},
		{"unchanged", nil, false},
		{"one file changed, one added", map[string]string{"All/p07.pkg": "rebuilt", "All/q.pkg": "new"}, true},
		{"a duplicate of a new file", map[string]string{"All/r.pkg": "rebuilt"}, true},
	} {
		writeTree(t, src, step.change)
		res, err := PublishLocal(t.Context(), cfg, root, src)
		if err != nil || res.New != step.new {
			t.Fatalf("%s: PublishLocal = %+v, %v; want New %v", step.name, res, err, step.new)
		}
		m := checkConsistent(t, root, testSet, pub)
		for p, content := range step.change {
			if e, ok := m.Lookup(p); !ok || e.SHA256 != digest.Sum([]byte(content)) {
				t.Errorf("%s: live set has %s = %+v, want %q", step.name, p, e, content)
			}
		}
		if ents, err := os.ReadDir(staging); err != nil || len(ents) != 0 {
			t.Errorf("%s: staging/ holds %v (%v), want nothing", step.name, ents, err)
		}
	}
}
