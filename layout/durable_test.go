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

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// setSyncfs sets useSyncfs until the test ends. Tests that call it do not
// run in parallel.
func setSyncfs(t *testing.T, on bool) {
	t.Helper()
	old := useSyncfs
	useSyncfs = on
	t.Cleanup(func() { useSyncfs = old })
}

// syncModes are the ways syncObjects and Recover make objects durable here.
func syncModes() []bool {
	if syncfsSupported {
		return []bool{true, false}
	}
	return []bool{false}
}

func syncName(on bool) string {
	if on {
		return "syncfs"
	}
	return "fsync-each"
}

// TestCommitAfterPowerLossFindsPartialObjects simulates a power loss after
// PutObject linked objects into place, before any Commit synced them: the
// writer's marker is on disk, its flock gone, and an object holds what a
// file written without fsync may hold after a reboot. The next Commit must
// refuse to reference it (it is removed and reported missing), and once it
// is sent again the Commit succeeds.
func TestCommitAfterPowerLossFindsPartialObjects(t *testing.T) {
	k := newKeys(t, t.TempDir())
	id := mustID(t, "20261125T031500Z")
	content := files{"All/a.pkg": "package a", "All/b.pkg": strings.Repeat("package b ", 1000), "meta.conf": "m"}
	bad := "All/b.pkg"
	for _, on := range syncModes() {
		for _, how := range []string{"intact", "truncated", "empty", "zeroed", "lost"} {
			// died while locked: the writer died while the committer
			// already held the Lock, so Commit's own Recover finds it.
			for _, diedWhileLocked := range []bool{false, true} {
				name := syncName(on) + "/" + how
				if diedWhileLocked {
					name += "/died while locked"
				}
				t.Run(name, func(t *testing.T) {
					setSyncfs(t, on)
					writer := newRoot(t)
					c := newCommit(t, writer, k, set1, id, setid.ID{}, content)
					if got := markers(t, writer); len(got) != 1 {
						t.Fatalf("markers after PutObject = %v, want one", got)
					}
					d := digest.Sum([]byte(content[bad]))
					// Another process takes over the root.
					r, err := Open(writer.Dir)
					if err != nil {
						t.Fatal(err)
					}
					ctx := context.Background()
					var unlock func() error
					if diedWhileLocked {
						if unlock, err = r.Lock(ctx); err != nil {
							t.Fatal(err)
						}
					}
					dieUnsynced(t, writer)
					if how != "intact" {
						damage(t, writer.ObjectPath(d), how)
					}
					if !diedWhileLocked {
						if unlock, err = r.Lock(ctx); err != nil {
							t.Fatal(err)
						}
					}
					err = r.Commit(ctx, c, k.v, time.Now())
					if uerr := unlock(); uerr != nil {
						t.Fatal(uerr)
					}
					if got := markers(t, r); len(got) != 0 {
						t.Errorf("markers after recovery = %v, want none", got)
					}
					if how == "intact" {
						if err != nil {
							t.Fatalf("Commit = %v", err)
						}
						checkSet(t, r, k, set1, id)
						return
					}
					var mo *MissingObjectsError
					if !errors.As(err, &mo) || !slices.Equal(mo.Missing, []digest.SHA256{d}) {
						t.Fatalf("Commit after power loss = %v, want *MissingObjectsError of %s", err, d)
					}
					if _, err := r.Live(set1); !errors.Is(err, ErrNotFound) {
						t.Errorf("Live after refused Commit = %v, want ErrNotFound", err)
					}
					if ok, err := r.HasObject(d); ok || err != nil {
						t.Errorf("HasObject(partial object) = %v, %v; want false", ok, err)
					}
					// The publisher sends it again, and commits.
					if err := r.PutObject(d, int64(len(content[bad])), strings.NewReader(content[bad])); err != nil {
						t.Fatal(err)
					}
					mustCommit(t, r, k, c)
					checkSet(t, r, k, set1, id)
					if got := markers(t, r); len(got) != 0 {
						t.Errorf("markers after Commit = %v, want none", got)
					}
				})
			}
		}
	}
}

// TestMarkerBelongsToItsLivingWriter: a Root's marker stays while its
// writer lives and may still write, another Root's Lock leaves it alone,
// and the writer's Commit removes it only if no put began during its sync.
func TestMarkerBelongsToItsLivingWriter(t *testing.T) {
	for _, on := range syncModes() {
		t.Run(syncName(on), func(t *testing.T) {
			setSyncfs(t, on)
			k := newKeys(t, t.TempDir())
			w := newRoot(t)
			id1 := mustID(t, "20261124T031500Z")
			c1 := newCommit(t, w, k, set1, id1, setid.ID{}, files{"a": "a1", "b": "b1"})
			before := markers(t, w)
			if len(before) != 1 {
				t.Fatalf("markers after PutObject = %v, want one", before)
			}
			// Another process locks the root: the writer is alive, its
			// objects are not to be checked, its marker stays.
			other, err := Open(w.Dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := other.Recover(t.Context()); err != nil {
				t.Fatal(err)
			}
			unlock, err := other.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := unlock(); err != nil {
				t.Fatal(err)
			}
			if got := markers(t, w); !slices.Equal(got, before) {
				t.Fatalf("markers after another Root's Lock = %v, want %v", got, before)
			}

			// A put that begins while the Commit syncs keeps the marker.
			late := []byte("late object")
			var perr error
			put := true
			setHooks(t, func(step string) error {
				if step == "objects-synced" && put {
					put = false
					perr = w.PutObject(digest.Sum(late), int64(len(late)), bytes.NewReader(late))
				}
				return nil
			})
			mustCommit(t, w, k, c1)
			setHooks(t, func(string) error { return nil })
			if perr != nil {
				t.Fatal(perr)
			}
			if got := markers(t, w); !slices.Equal(got, before) {
				t.Errorf("markers after a Commit with a put during its sync = %v, want %v", got, before)
			}
			// The next Commit syncs it too, and drops the marker.
			id2 := mustID(t, "20261125T031500Z")
			c2 := newCommit(t, w, k, set1, id2, id1, files{"a": "a1", "late": string(late)})
			mustCommit(t, w, k, c2)
			if got := markers(t, w); len(got) != 0 {
				t.Errorf("markers after Commit = %v, want none", got)
			}
			checkSet(t, w, k, set1, id2)
			// A new put makes a new marker.
			if err := w.PutObject(digest.Sum([]byte("new")), 3, strings.NewReader("new")); err != nil {
				t.Fatal(err)
			}
			if got := markers(t, w); len(got) != 1 || slices.Equal(got, before) {
				t.Errorf("markers after a new put = %v, want one new", got)
			}
		})
	}
}

// TestRecoverLeavesSetObjects: Recover re-hashes only objects no set holds
// (a Commit synced the others before linking them), so it never removes an
// object a set holds, whatever happened to it since.
func TestRecoverLeavesSetObjects(t *testing.T) {
	k := newKeys(t, t.TempDir())
	w := newRoot(t)
	id := mustID(t, "20261125T031500Z")
	inSet := []byte("in a set")
	mustCommit(t, w, k, newCommit(t, w, k, set1, id, setid.ID{}, files{"a": string(inSet)}))
	fresh := []byte("fresh")
	if err := w.PutObject(digest.Sum(fresh), int64(len(fresh)), bytes.NewReader(fresh)); err != nil {
		t.Fatal(err)
	}
	dieUnsynced(t, w)
	damage(t, w.ObjectPath(digest.Sum(inSet)), "zeroed") // bit rot: Verify's business
	damage(t, w.ObjectPath(digest.Sum(fresh)), "truncated")
	r, err := Open(w.Dir)
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// Lock recovered already; a second Recover finds nothing to do.
	if removed, err := r.Recover(t.Context()); err != nil || len(removed) != 0 {
		t.Errorf("second Recover = %v, %v; want nothing", removed, err)
	}
	for _, tc := range []struct {
		name string
		d    digest.SHA256
		want bool
	}{
		{"in a set", digest.Sum(inSet), true},
		{"fresh and partial", digest.Sum(fresh), false},
	} {
		if ok, err := r.HasObject(tc.d); ok != tc.want || err != nil {
			t.Errorf("HasObject(%s) = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
}

// A writer that dies while an object has links outside sets/ (its temp
// file's name not yet removed, or a staging directory of a Commit that
// linked it before its sync) left an object whose link count says "in a
// set": Recover must still check it.
func TestRecoverSeesThroughTempAndStagingLinks(t *testing.T) {
	for _, where := range []string{"temp in its fan-out directory", "copy temp in staging", "staging of a crashed Commit"} {
		t.Run(where, func(t *testing.T) {
			k := newKeys(t, t.TempDir())
			w := newRoot(t)
			id := mustID(t, "20261125T031500Z")
			inSet := []byte("in a set")
			mustCommit(t, w, k, newCommit(t, w, k, set1, id, setid.ID{}, files{"a": string(inSet)}))
			fresh := []byte("fresh and partial")
			d := digest.Sum(fresh)
			if err := w.PutObject(d, int64(len(fresh)), bytes.NewReader(fresh)); err != nil {
				t.Fatal(err)
			}
			var extra string
			switch where {
			case "temp in its fan-out directory":
				extra = filepath.Join(filepath.Dir(w.ObjectPath(d)), objectTempPrefix+d.String()+".x1")
			case "copy temp in staging":
				extra = filepath.Join(w.Dir, stagingDir, copyTempPrefix+"x2")
			case "staging of a crashed Commit":
				dir := filepath.Join(w.Dir, stagingDir, stagingName(set1, setid.Next(id, id.Time())), "All")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				extra = filepath.Join(dir, "b.pkg")
			}
			if err := os.Link(w.ObjectPath(d), extra); err != nil {
				t.Fatal(err)
			}
			dieUnsynced(t, w)
			damage(t, w.ObjectPath(d), "truncated")
			r, err := Open(w.Dir)
			if err != nil {
				t.Fatal(err)
			}
			removed, err := r.Recover(t.Context())
			if err != nil || len(removed) != 1 || removed[0] != d {
				t.Fatalf("Recover = %v, %v; want %s removed", removed, err, d)
			}
			if ok, err := r.HasObject(digest.Sum(inSet)); !ok || err != nil {
				t.Errorf("HasObject(in a set) = %v, %v; want it kept", ok, err)
			}
			if m := markers(t, r); len(m) != 0 {
				t.Errorf("markers after Recover = %v, want none", m)
			}
		})
	}
}

// TestLockRemovesStaleWorkDirs: a committer killed after it linked objects
// into staging/ leaves no marker when it wrote no object of its own; its
// work directory must still go when the next writer takes the Lock, or its
// links would pass for a set's ("synced") where Commit counts links
// (systems without syncfs), and an object another writer has not synced
// yet could go live unsynced. This Root's own live Stages stay.
func TestLockRemovesStaleWorkDirs(t *testing.T) {
	r := newRoot(t)
	obj := []byte("uploaded by a writer that is still alive, not synced yet")
	d := digest.Sum(obj)
	if err := r.PutObject(d, int64(len(obj)), bytes.NewReader(obj)); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(r.Dir, stagingDir, stagingName(set1, mustID(t, "20261125T031500Z")), "All")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(r.ObjectPath(d), filepath.Join(stale, "x.pkg")); err != nil {
		t.Fatal(err)
	}
	live, err := r.NewStage(set1)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Discard()
	if err := live.Link("All/x.pkg", d); err != nil {
		t.Fatal(err)
	}
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	if _, err := os.Stat(filepath.Dir(stale)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale work directory is still there after Lock: %v", err)
	}
	if _, err := os.Stat(live.dir); err != nil {
		t.Errorf("this Root's live Stage was removed: %v", err)
	}
}
