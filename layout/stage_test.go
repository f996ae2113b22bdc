package layout

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// setFiles lists the files under the set directory of set id, relative,
// slash-separated, the .pkgcdn directory left out.
func setFiles(t *testing.T, r *Root, set string, id setid.ID) []string {
	t.Helper()
	dir := r.SetDir(set, id)
	var out []string
	for _, p := range tree(t, dir) {
		p = filepath.ToSlash(p)
		if p == "." || strings.HasPrefix(p, ".pkgcdn") {
			continue
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

func TestCommitTakesOverStage(t *testing.T) {
	k := newKeys(t, t.TempDir())
	id1, id2 := mustID(t, "20261124T031500Z"), mustID(t, "20261125T031500Z")
	old := files{"All/a.pkg": "a1", "All/b.pkg": "b", "meta.conf": "m"}
	next := files{"All/a.pkg": "a2", "All/b.pkg": "b", "All/Hashed/c~1.pkg": "c", "meta.conf": "m"}
	tests := []struct {
		name  string
		stage func(t *testing.T, s *Stage)
		set   string // the Stage's set; "" for set1
	}{
		{"empty", func(t *testing.T, s *Stage) {}, ""},
		{"every file", func(t *testing.T, s *Stage) {
			for p, content := range next {
				if err := s.Link(p, digest.Sum([]byte(content))); err != nil {
					t.Fatal(err)
				}
			}
		}, ""},
		{"stale and extra links", func(t *testing.T, s *Stage) {
			for p, content := range map[string]string{
				"All/a.pkg":       "a1", // the old content: the manifest has a2
				"gone/deep/x.pkg": "b",  // not in the manifest, nor is its directory
				"meta.conf":       "m",
			} {
				if err := s.Link(p, digest.Sum([]byte(content))); err != nil {
					t.Fatal(err)
				}
			}
		}, ""},
		{"object not stored", func(t *testing.T, s *Stage) {
			if err := s.Link("All/z.pkg", digest.Sum([]byte("never stored"))); err != nil {
				t.Fatalf("Link of a missing object = %v, want it skipped", err)
			}
		}, ""},
		{"failed link", func(t *testing.T, s *Stage) {
			if err := s.Link("../escape", digest.Sum([]byte("b"))); err == nil {
				t.Fatal("Link(../escape) = nil, want an error")
			}
			if err := s.Link("All/b.pkg", digest.Sum([]byte("b"))); err == nil {
				t.Fatal("Link after a failure = nil, want the failure again")
			}
		}, ""},
		{"another set", func(t *testing.T, s *Stage) {
			if err := s.Link("All/b.pkg", digest.Sum([]byte("b"))); err != nil {
				t.Fatal(err)
			}
		}, "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoot(t)
			mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, old))
			c := newCommit(t, r, k, set1, id2, id1, next)
			unlock, err := r.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			set := set1
			if tc.set != "" {
				set = tc.set
			}
			s, err := r.NewStage(set)
			if err != nil {
				t.Fatal(err)
			}
			tc.stage(t, s)
			c.Stage = s
			if err := r.Commit(t.Context(), c, k.v, c.Manifest.Created); err != nil {
				t.Fatal(err)
			}
			if err := s.Discard(); err != nil {
				t.Fatal(err)
			}
			checkSet(t, r, k, set1, id2)
			want := []string{"All", "All/Hashed", "All/Hashed/c~1.pkg", "All/a.pkg", "All/b.pkg", "meta.conf"}
			if got := setFiles(t, r, set1, id2); !slices.Equal(got, want) {
				t.Errorf("set holds %v, want %v", got, want)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers: %v", l)
			}
		})
	}
}

func TestStageDiscard(t *testing.T) {
	r := newRoot(t)
	s, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("b")
	if err := r.PutObject(digest.Sum(b), 1, strings.NewReader("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.Link("All/b.pkg", digest.Sum(b)); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Discard(); err != nil {
			t.Fatal(err)
		}
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("leftovers after Discard: %v", l)
	}
	if err := s.Link("All/a.pkg", digest.Sum(b)); err != nil {
		t.Errorf("Link after Discard = %v, want nil (nothing done)", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(r.Dir, stagingDir)); len(ents) != 0 {
		t.Errorf("staging/ after Discard holds %v", ents)
	}
}

func TestCommitStageNameCollisions(t *testing.T) {
	k := newKeys(t, t.TempDir())
	for _, name := range []string{"provisional ID is the set's", "leftover under the set's staging name"} {
		t.Run(name, func(t *testing.T) {
			r := newRoot(t)
			unlock, err := r.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			s, err := r.NewStage(set1)
			if err != nil {
				t.Fatal(err)
			}
			// The Stage's provisional ID is the time of NewStage.
			id := setid.FromTime(time.Now())
			if name != "provisional ID is the set's" {
				id = mustID(t, "20261125T031500Z")
				junk := filepath.Join(r.Dir, stagingDir, stagingName(set1, id), "junk")
				if err := os.MkdirAll(junk, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			c := newCommit(t, r, k, set1, id, setid.ID{}, files{"All/a.pkg": "a", "meta.conf": "m"})
			if err := s.Link("All/a.pkg", digest.Sum([]byte("a"))); err != nil {
				t.Fatal(err)
			}
			c.Stage = s
			if err := r.Commit(t.Context(), c, k.v, time.Now()); err != nil {
				t.Fatal(err)
			}
			checkSet(t, r, k, set1, id)
			if got, want := setFiles(t, r, set1, id), []string{"All", "All/a.pkg", "meta.conf"}; !slices.Equal(got, want) {
				t.Errorf("set holds %v, want %v", got, want)
			}
			if err := s.Discard(); err != nil {
				t.Fatal(err)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers: %v", l)
			}
		})
	}
}

// A writer dies with un-synced objects while this Root's Stage is live:
// Recover keeps the Stage (not a crash leftover) but does not take the
// Stage's links for a set's, so a partial object the Stage linked is
// still found and removed, and the Commit does not keep the Stage's link
// to its damaged inode.
func TestRecoverKeepsLiveStageButChecksItsLinks(t *testing.T) {
	k := newKeys(t, t.TempDir())
	r := newRoot(t)
	id1 := mustID(t, "20261124T031500Z")
	mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"meta.conf": "m"}))
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	s, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	w, err := Open(r.Dir) // another writer (process) on the same root
	if err != nil {
		t.Fatal(err)
	}
	x := []byte("an upload of a writer that dies")
	dx := digest.Sum(x)
	if err := w.PutObject(dx, int64(len(x)), strings.NewReader(string(x))); err != nil {
		t.Fatal(err)
	}
	if err := s.Link("All/x.pkg", dx); err != nil {
		t.Fatal(err)
	}
	if err := s.Link("meta.conf", digest.Sum([]byte("m"))); err != nil {
		t.Fatal(err)
	}
	dieUnsynced(t, w)
	damage(t, w.ObjectPath(dx), "truncated")
	removed, err := r.Recover(t.Context())
	if err != nil || len(removed) != 1 || removed[0] != dx {
		t.Fatalf("Recover = %v, %v; want %s removed", removed, err, dx)
	}
	s.mu.Lock()
	dir := s.dir
	s.mu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "meta.conf")); err != nil {
		t.Fatalf("the live Stage lost its links: %v", err)
	}
	// The publisher sends x again; the Commit relinks it from objects/.
	if err := r.PutObject(dx, int64(len(x)), strings.NewReader(string(x))); err != nil {
		t.Fatal(err)
	}
	id2 := mustID(t, "20261125T031500Z")
	c := newCommit(t, r, k, set1, id2, id1, files{"All/x.pkg": string(x), "meta.conf": "m"})
	c.Stage = s
	if err := r.Commit(t.Context(), c, k.v, time.Now()); err != nil {
		t.Fatal(err)
	}
	checkSet(t, r, k, set1, id2)
}

// Without syncfs, Commit fsyncs the objects no set holds, told apart by
// their link count: a Stage's link must not make an object another
// writer has not synced yet look like one of a set.
func TestStageLinksAreNoSets(t *testing.T) {
	old := useSyncfs
	useSyncfs = false
	t.Cleanup(func() { useSyncfs = old })
	k := newKeys(t, t.TempDir())
	r := newRoot(t)
	id1 := mustID(t, "20261124T031500Z")
	mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"meta.conf": "m"}))
	w, err := Open(r.Dir) // another writer, alive, its object not synced
	if err != nil {
		t.Fatal(err)
	}
	x := []byte("uploaded by another writer")
	dx := digest.Sum(x)
	if err := w.PutObject(dx, int64(len(x)), strings.NewReader(string(x))); err != nil {
		t.Fatal(err)
	}
	s, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Discard()
	for p, d := range map[string]digest.SHA256{"All/x.pkg": dx, "meta.conf": digest.Sum([]byte("m"))} {
		if err := s.Link(p, d); err != nil {
			t.Fatal(err)
		}
	}
	c := newCommit(t, r, k, set1, mustID(t, "20261125T031500Z"), id1, files{"All/x.pkg": string(x), "meta.conf": "m"})
	_, fresh, err := r.classify(c.Manifest, s, s.linksOf(set1))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fresh, []digest.SHA256{dx}) {
		t.Errorf("fresh = %v, want only %s (meta.conf is in a set)", fresh, dx)
	}
}

func TestStageUsable(t *testing.T) {
	r := newRoot(t)
	var none *Stage
	if none.Usable() {
		t.Error("a nil Stage is usable")
	}
	s, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Usable() {
		t.Fatal("a new Stage is not usable")
	}
	// Another process's GC or Lock removed its directory.
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Open(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.GC(t.Context(), Policy{}); err != nil {
		t.Fatal(err)
	}
	unlock()
	if s.Usable() {
		t.Error("a Stage whose directory another Root's GC removed is usable")
	}
	s2, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Discard(); err != nil {
		t.Fatal(err)
	}
	if s2.Usable() {
		t.Error("a discarded Stage is usable")
	}
}

// A work directory another process still fills (a master staging without
// the Lock) is removed all the same, without ENOTEMPTY.
func TestRemoveWorkDirWhileFilled(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, stagePrefix+"busy")
	if err := os.MkdirAll(filepath.Join(p, "All"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if err := os.WriteFile(filepath.Join(p, "All", fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = os.WriteFile(filepath.Join(p, "All", fmt.Sprintf("n%d", i)), nil, 0o644) // fails once p is gone
		}
	}()
	err := removeWorkDir(p)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left in staging: %v", ents)
	}
}
