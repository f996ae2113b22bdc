package layout

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

const set1 = "FreeBSD:14:amd64/latest"

func TestOpenDrawsTree(t *testing.T) {
	r := newRoot(t)
	for _, d := range []string{"objects/sha256", "sets", "staging"} {
		if fi, err := os.Stat(filepath.Join(r.Dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("Open: %s not a directory (%v)", d, err)
		}
	}
	if _, err := Open(filepath.Join(r.Dir, "nope")); err == nil {
		t.Errorf("Open(missing dir) = nil error")
	}
	if got, want := r.ObjectPath(digest.Sum([]byte("x"))), filepath.Join(r.Dir, "objects/sha256/2d/2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"); got != want {
		t.Errorf("ObjectPath = %s, want %s", got, want)
	}
	if _, _, err := r.Sets(); !isNotFound(err) {
		t.Errorf("Sets() on a new root = %v, want ErrNotFound", err)
	}
	if _, err := r.Live(set1); !isNotFound(err) {
		t.Errorf("Live on a new root = %v, want ErrNotFound", err)
	}
}

func TestHostileNamesRefused(t *testing.T) {
	r := newRoot(t)
	id := mustID(t, "20261125T031500Z")
	for _, name := range []string{"", "..", "../x", "a/../b", "/abs", "a//b", "a/", ".pkgcdn", "a/.hidden",
		"a/current", "a/20261125T031500Z", "a\x00b", "a b", `a\b`, strings.Repeat("x", setid.MaxNameLen+1)} {
		t.Run("set="+name, func(t *testing.T) {
			if err := ValidateSetName(name); err == nil {
				t.Fatalf("ValidateSetName(%q) = nil", name)
			}
			if d := r.SetDir(name, id); d != "" {
				t.Errorf("SetDir(%q) = %q, want \"\"", name, d)
			}
			if _, err := r.FilePath(name, id, "All/x.pkg"); err == nil {
				t.Errorf("FilePath(%q) = nil error", name)
			}
			if _, err := r.Live(name); err == nil || isNotFound(err) {
				t.Errorf("Live(%q) = %v, want a name error", name, err)
			}
			if _, err := r.SetIDs(name); err == nil || isNotFound(err) {
				t.Errorf("SetIDs(%q) = %v, want a name error", name, err)
			}
			if _, _, err := r.Manifest(name, id); err == nil || isNotFound(err) {
				t.Errorf("Manifest(%q) = %v, want a name error", name, err)
			}
		})
	}
	for _, p := range []string{"", "../etc/passwd", "/etc/passwd", "a/../../x", "a/./b", "a//b", `a\..\b`,
		".pkgcdn/manifest", ".PKGCDN/manifest", "a\nb", "a/"} {
		t.Run("path="+p, func(t *testing.T) {
			if got, err := r.FilePath(set1, id, p); err == nil {
				t.Errorf("FilePath(%q) = %q, want an error", p, got)
			}
		})
	}
}

// rawManifest compresses manifest text as manifest.Encode would, without
// its validation: the bytes a hostile publisher could send.
func rawManifest(t *testing.T, k keys, set, id, path string) Commit {
	t.Helper()
	created := time.Now().UTC().Truncate(time.Second)
	expires := created.Add(time.Hour)
	text := "pkgcdn-manifest v1\nset " + set + "\nid " + id + "\nprevious -\ncreated " + created.Format(time.RFC3339) +
		"\nexpires " + expires.Format(time.RFC3339) + "\nfiles 1\n" + digest.Sum(nil).String() + " 0 " + id + " " + path + "\n"
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	data := enc.EncodeAll([]byte(text), nil)
	tc := "pkgcdn-manifest set=" + set + " id=" + id + " expires=" + expires.Format(time.RFC3339)
	sid, _ := setid.Parse(id)
	sets := setid.Sets{{Set: set, ID: sid, Manifest: digest.Sum(data)}}
	sdata, ssig := manifest.SignSets(sets, k.signer)
	return Commit{ManifestData: data, ManifestSig: k.signer.Sign(data, tc), SetsData: sdata, SetsSig: ssig}
}

func TestCommitRefusesHostileManifestBeforeWriting(t *testing.T) {
	k := newKeys(t, t.TempDir())
	for _, tc := range []struct{ name, set, path string }{
		{"dotdot path", set1, "../../../etc/passwd"},
		{"absolute path", set1, "/etc/passwd"},
		{"reserved path", set1, ".pkgcdn/manifest"},
		{"dot segment", set1, "All/./x"},
		{"set named current", "a/current", "All/x"},
		{"set named like an ID", "a/20261125T031500Z", "All/x"},
		{"dotdot set", "a/../../x", "All/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoot(t)
			if err := r.PutObject(digest.Sum(nil), 0, strings.NewReader("")); err != nil {
				t.Fatal(err)
			}
			before := tree(t, r.Dir)
			c := rawManifest(t, k, tc.set, "20261125T031500Z", tc.path)
			if err := commit(t, r, k, c); err == nil {
				t.Fatalf("Commit(set %q, path %q) = nil, want an error", tc.set, tc.path)
			}
			after := slices.DeleteFunc(tree(t, r.Dir), func(p string) bool { return p == lockFile })
			if !slices.Equal(before, after) {
				t.Errorf("Commit wrote files: before %v\nafter %v", before, after)
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestPutObject(t *testing.T) {
	content := []byte("a package's bytes\n")
	d := digest.Sum(content)
	for _, tc := range []struct {
		name    string
		body    []byte
		size    int64
		wantErr any // pointer to an error type for errors.As, or nil
	}{
		{"exact", content, int64(len(content)), nil},
		{"wrong bytes", bytes.ToUpper(content), int64(len(content)), new(*digest.MismatchError)},
		{"short", content[:5], int64(len(content)), new(*digest.SizeError)},
		{"long", append(slices.Clone(content), "more"...), int64(len(content)), new(*digest.SizeError)},
		{"declared size too small", content, 3, new(*digest.SizeError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := newRoot(t)
			err := r.PutObject(d, tc.size, bytes.NewReader(tc.body))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("PutObject = %v", err)
				}
				fi, err := os.Stat(r.ObjectPath(d))
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o444 {
					t.Errorf("object mode %v, want 0444", fi.Mode().Perm())
				}
				got, _ := os.ReadFile(r.ObjectPath(d))
				if !bytes.Equal(got, content) {
					t.Errorf("object holds %q, want %q", got, content)
				}
				// Present: src is not read.
				if err := r.PutObject(d, tc.size, errReader{}); err != nil {
					t.Errorf("PutObject(present) = %v", err)
				}
				return
			}
			if !errors.As(err, tc.wantErr) {
				t.Fatalf("PutObject = %v, want %T", err, tc.wantErr)
			}
			if ok, err := r.HasObject(d); ok || err != nil {
				t.Errorf("HasObject after a bad put = %v, %v; want false", ok, err)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("bad put left %v", l)
			}
		})
	}
}

func TestPutFile(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB: several copy chunks
	d := digest.Sum(content)
	for _, method := range []struct {
		name    string
		methods []copyMethod
	}{{"default", defaultCopyMethods}, {"copy_file_range+reread", []copyMethod{copyFileRange}},
		{"copy_file_range+hash_source", []copyMethod{copyFileRangeHashing}}, {"userspace", nil}} {
		for _, tc := range []struct {
			name    string
			src     []byte
			size    int64
			wantErr any
		}{
			{"exact", content, int64(len(content)), nil},
			{"wrong bytes", append([]byte("X"), content[1:]...), int64(len(content)), new(*digest.MismatchError)},
			{"short source", content[:1000], int64(len(content)), new(*digest.SizeError)},
			{"long source", append(slices.Clone(content), 'x'), int64(len(content)), new(*digest.SizeError)},
			{"empty file", nil, 0, new(*digest.MismatchError)},
		} {
			t.Run(method.name+"/"+tc.name, func(t *testing.T) {
				old := copyMethods
				copyMethods = method.methods
				t.Cleanup(func() { copyMethods = old })
				r := newRoot(t)
				src := filepath.Join(t.TempDir(), "src.pkg")
				if err := os.WriteFile(src, tc.src, 0o644); err != nil {
					t.Fatal(err)
				}
				err := r.PutFile(d, tc.size, src)
				if tc.wantErr != nil {
					if !errors.As(err, tc.wantErr) {
						t.Fatalf("PutFile = %v, want %T", err, tc.wantErr)
					}
					if ok, _ := r.HasObject(d); ok {
						t.Errorf("bad PutFile kept the object")
					}
					if l := leftovers(t, r); len(l) > 0 {
						t.Errorf("bad PutFile left %v", l)
					}
					return
				}
				if err != nil {
					t.Fatalf("PutFile = %v", err)
				}
				// Never a hardlink: rewriting the source in place must not
				// change the object.
				if err := os.WriteFile(src, []byte("rebuilt"), 0o644); err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(r.ObjectPath(d))
				if err != nil || !bytes.Equal(got, content) {
					t.Errorf("object changed with its source (err %v)", err)
				}
			})
		}
	}
}

func TestPutObjectDiskFull(t *testing.T) {
	r := newRoot(t)
	setHooks(t, func(step string) error {
		if step == "object-written" {
			return syscall.ENOSPC
		}
		return nil
	})
	err := r.PutObject(digest.Sum([]byte("x")), 1, strings.NewReader("x"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("PutObject on a full disk = %v, want ENOSPC", err)
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("failed PutObject left %v", l)
	}
}

func TestCommitDiskFull(t *testing.T) {
	for _, step := range []string{"staging-linked", "atomicfile:sync", "staging-built", "atomicfile:symlink-rename", "sets-written"} {
		t.Run(step, func(t *testing.T) {
			r := newRoot(t)
			k := newKeys(t, t.TempDir())
			id1, id2 := mustID(t, "20261124T031500Z"), mustID(t, "20261125T031500Z")
			mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"All/a.pkg": "a1", "meta.conf": "m"}))
			c := newCommit(t, r, k, set1, id2, id1, files{"All/a.pkg": "a2", "All/b.pkg": "b", "meta.conf": "m"})
			n := 0
			setHooks(t, func(s string) error {
				if s == step {
					if n++; n == 1 {
						return syscall.ENOSPC
					}
				}
				return nil
			})
			err := commit(t, r, k, c)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Commit on a full disk = %v, want ENOSPC", err)
			}
			if !strings.Contains(err.Error(), set1) || !strings.Contains(err.Error(), id2.String()) {
				t.Errorf("error %q does not name the set and ID", err)
			}
			live, err := r.Live(set1)
			if err != nil {
				t.Fatal(err)
			}
			// Commit writes no file with atomicfile before the swap: its
			// first "atomicfile:sync" is that of SETS.
			if step != "sets-written" && step != "atomicfile:sync" && live != id1 {
				t.Errorf("live set after a failed commit = %s, want %s", live, id1)
			}
			checkSet(t, r, k, set1, live)
			setHooks(t, func(string) error { return nil })
			// The next run completes and leaves nothing behind.
			mustCommit(t, r, k, c)
			if live, _ := r.Live(set1); live != id2 {
				t.Errorf("live after rerun = %s, want %s", live, id2)
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers after rerun: %v", l)
			}
		})
	}
}

func TestCommitChecks(t *testing.T) {
	k := newKeys(t, t.TempDir())
	other := newKeys(t, t.TempDir())
	id1, id2 := mustID(t, "20261124T031500Z"), mustID(t, "20261125T031500Z")
	for _, tc := range []struct {
		name string
		make func(t *testing.T, r *Root) Commit
		want any // error sentinel or pointer to error type
	}{
		{"manifest by untrusted key", func(t *testing.T, r *Root) Commit {
			return newCommit(t, r, other, set1, id2, id1, files{"x": "x"})
		}, sign.ErrUnknownKey},
		{"SETS by untrusted key", func(t *testing.T, r *Root) Commit {
			c := newCommit(t, r, k, set1, id2, id1, files{"x": "x"})
			c.SetsSig = other.signer.Sign(c.SetsData, "pkgcdn-sets v1")
			return c
		}, sign.ErrUnknownKey},
		{"expired", func(t *testing.T, r *Root) Commit {
			m := &manifest.Manifest{Set: set1, ID: id2, Previous: id1, Created: time.Now().Add(-2 * time.Hour).UTC(), Expires: time.Now().Add(-time.Hour)}
			return signCommit(t, r, k, m)
		}, manifest.ErrExpired},
		{"rollback", func(t *testing.T, r *Root) Commit {
			return newCommit(t, r, k, set1, id1, setid.ID{}, files{"x": "x"})
		}, setid.ErrRollback},
		{"older than live", func(t *testing.T, r *Root) Commit {
			return newCommit(t, r, k, set1, mustID(t, "20261101T000000Z"), setid.ID{}, files{"x": "x"})
		}, setid.ErrRollback},
		{"conflict", func(t *testing.T, r *Root) Commit {
			return newCommit(t, r, k, set1, id2, setid.ID{}, files{"x": "x"})
		}, ErrConflict},
		{"SETS changed", func(t *testing.T, r *Root) Commit {
			c := newCommit(t, r, k, set1, id2, id1, files{"x": "x"})
			s, _ := setid.ParseSets(bytes.NewReader(c.SetsData))
			c.SetsData, c.SetsSig = manifest.SignSets(s.With(setid.Entry{Set: "other", ID: id1, Manifest: digest.Sum(nil)}), k.signer)
			return c
		}, ErrSetsChanged},
		{"SETS without this set", func(t *testing.T, r *Root) Commit {
			c := newCommit(t, r, k, set1, id2, id1, files{"x": "x"})
			c.SetsData, c.SetsSig, _ = r.Sets()
			return c
		}, ErrSetsChanged},
		{"Manifest is not ManifestData", func(t *testing.T, r *Root) Commit {
			c := newCommit(t, r, k, set1, id2, id1, files{"x": "x"})
			c.Manifest = &manifest.Manifest{Set: "other", ID: id2}
			return c
		}, nil},
		{"missing objects", func(t *testing.T, r *Root) Commit {
			m := &manifest.Manifest{Set: set1, ID: id2, Previous: id1, Created: time.Now().UTC(), Expires: time.Now().Add(time.Hour),
				Entries: []manifest.Entry{
					{Path: "a", Size: 1, SHA256: digest.Sum([]byte("a")), Modified: id2},
					{Path: "b", Size: 1, SHA256: digest.Sum([]byte("b")), Modified: id2},
					{Path: "c", Size: 2, SHA256: digest.Sum([]byte("a1")), Modified: id1}, // present
				}}
			return signCommit(t, r, k, m)
		}, new(*MissingObjectsError)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRoot(t)
			mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"All/a.pkg": "a1"}))
			setsBefore, _, _ := r.Sets()
			c := tc.make(t, r)
			err := commit(t, r, k, c)
			switch w := tc.want.(type) {
			case nil:
				if err == nil {
					t.Fatalf("Commit = nil, want an error")
				}
			case error:
				if !errors.Is(err, w) {
					t.Fatalf("Commit = %v, want %v", err, w)
				}
			default:
				if !errors.As(err, w) {
					t.Fatalf("Commit = %v, want %T", err, w)
				}
			}
			var me *MissingObjectsError
			if errors.As(err, &me) {
				want := []digest.SHA256{digest.Sum([]byte("a")), digest.Sum([]byte("b"))}
				if !slices.Equal(me.Missing, want) {
					t.Errorf("Missing = %v, want %v", me.Missing, want)
				}
			}
			if live, _ := r.Live(set1); live != id1 {
				t.Errorf("live after refused commit = %s, want %s", live, id1)
			}
			if ids, _ := r.SetIDs(set1); !slices.Equal(ids, []setid.ID{id1}) {
				t.Errorf("SetIDs after refused commit = %v", ids)
			}
			if s, _, _ := r.Sets(); !bytes.Equal(s, setsBefore) {
				t.Errorf("SETS changed by a refused commit")
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("refused commit left %v", l)
			}
		})
	}
}

func TestCommitPublishesAndRerunIsNoop(t *testing.T) {
	r := newRoot(t)
	k := newKeys(t, t.TempDir())
	id1, id2 := mustID(t, "20261124T031500Z"), mustID(t, "20261125T031500Z")
	c1 := newCommit(t, r, k, set1, id1, setid.ID{}, files{"All/a.pkg": "a1", "All/Hashed/a~1.pkg": "a1", "meta.conf": "m"})
	mustCommit(t, r, k, c1)
	mustCommit(t, r, k, newCommit(t, r, k, "FreeBSD:14:amd64", id1, setid.ID{}, files{"x": "x"}))
	c2 := newCommit(t, r, k, set1, id2, id1, files{"All/a.pkg": "a2", "All/b.pkg": "b", "meta.conf": "m", "sub dir/with space~$.pkg": "s"})
	mustCommit(t, r, k, c2)
	before := tree(t, r.Dir)
	mustCommit(t, r, k, c2) // a rerun of a complete commit changes nothing
	if after := tree(t, r.Dir); !slices.Equal(before, after) {
		t.Errorf("rerun changed the tree:\n%v\n%v", before, after)
	}
	if err := commit(t, r, k, c1); !errors.Is(err, setid.ErrRollback) {
		t.Errorf("re-committing the old set = %v, want ErrRollback", err)
	}
	if live, err := r.Live(set1); live != id2 || err != nil {
		t.Errorf("Live = %s, %v; want %s", live, err, id2)
	}
	if ids, err := r.SetIDs(set1); !slices.Equal(ids, []setid.ID{id1, id2}) || err != nil {
		t.Errorf("SetIDs = %v, %v", ids, err)
	}
	if names, err := r.SetNames(); !slices.Equal(names, []string{"FreeBSD:14:amd64", set1}) || err != nil {
		t.Errorf("SetNames = %q, %v", names, err)
	}
	if target, _ := os.Readlink(filepath.Join(r.Dir, "sets", set1, "current")); target != id2.String() {
		t.Errorf("current -> %q, want relative %q", target, id2)
	}
	data, sig, err := r.Manifest(set1, id2)
	if err != nil || !bytes.Equal(data, c2.ManifestData) || !bytes.Equal(sig, c2.ManifestSig) {
		t.Errorf("Manifest() = (%d bytes, %d bytes, %v), not the committed ones", len(data), len(sig), err)
	}
	data, sig, err = r.Sets()
	if err != nil || !bytes.Equal(data, c2.SetsData) || !bytes.Equal(sig, c2.SetsSig) {
		t.Errorf("Sets() is not the committed SETS (%v)", err)
	}
	p, err := r.FilePath(set1, id2, "All/a.pkg")
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	oi, _ := os.Stat(r.ObjectPath(digest.Sum([]byte("a2"))))
	if !os.SameFile(fi, oi) {
		t.Errorf("set file is not a hardlink of its object")
	}
	if _, _, err := r.Manifest(set1, mustID(t, "20261126T000000Z")); !isNotFound(err) {
		t.Errorf("Manifest(unknown id) = %v, want ErrNotFound", err)
	}
	checkSet(t, r, k, set1, id1)
	checkSet(t, r, k, set1, id2)
	checkSet(t, r, k, set1, setid.ID{})
}

func TestLockContention(t *testing.T) {
	r := newRoot(t)
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err = r.Lock(ctx)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	if want := "pid " + itoa(os.Getpid()) + " since "; !strings.Contains(err.Error(), want) {
		t.Errorf("ErrLocked %q does not name the holder (%q)", err, want)
	}

	// A waiter gets the lock as soon as the holder lets go.
	waiting := make(chan struct{})
	var once sync.Once
	setHooks(t, func(step string) error {
		if step == "lock-wait" {
			once.Do(func() { close(waiting) })
		}
		return nil
	})
	got := make(chan error, 1)
	go func() {
		u, err := r.Lock(t.Context())
		if err == nil {
			err = u()
		}
		got <- err
	}()
	<-waiting // the second Lock found the lock held
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("waiting Lock = %v, want the lock once released", err)
	}
}

func TestConcurrentReadersDuringSwap(t *testing.T) {
	r := newRoot(t)
	k := newKeys(t, t.TempDir())
	paths := []string{"All/a.pkg", "All/b.pkg", "meta.conf", "packagesite.pkg"}
	contentOf := func(i int) files {
		f := files{}
		for _, p := range paths {
			f[p] = p + " of set " + itoa(i)
		}
		return f
	}
	base := mustID(t, "20261101T000000Z").Time()
	idOf := func(i int) setid.ID { return setid.FromTime(base.Add(time.Duration(i) * time.Hour)) }
	mustCommit(t, r, k, newCommit(t, r, k, set1, idOf(0), setid.ID{}, contentOf(0)))

	done := make(chan struct{})
	errs := make(chan error, 4)
	for range 3 {
		go func() {
			errs <- func() error {
				for {
					id, err := r.Live(set1)
					if err != nil {
						return err
					}
					data, _, err := r.Manifest(set1, id)
					if err != nil {
						return err
					}
					m, err := manifest.Decode(data)
					if err != nil {
						return err
					}
					for _, e := range m.Entries {
						p, err := r.FilePath(set1, id, e.Path)
						if err != nil {
							return err
						}
						b, err := os.ReadFile(p)
						if err != nil {
							return err
						}
						if digest.Sum(b) != e.SHA256 {
							return errors.New("mixed set: " + e.Path + " of " + id.String() + " holds " + string(b))
						}
					}
					select {
					case <-done:
						return nil
					default:
					}
				}
			}()
		}()
	}
	for i := 1; i <= 15; i++ {
		mustCommit(t, r, k, newCommit(t, r, k, set1, idOf(i), idOf(i-1), contentOf(i)))
	}
	close(done)
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestGC(t *testing.T) {
	r := newRoot(t)
	k := newKeys(t, t.TempDir())
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	// Six daily sets; the last one is live. Each has its own file and
	// shares "shared".
	var ids []setid.ID
	for i := range 6 {
		id := setid.FromTime(now.Add(time.Duration(i-5)*day - time.Hour))
		var prev setid.ID
		if i > 0 {
			prev = ids[i-1]
		}
		mustCommit(t, r, k, newCommit(t, r, k, set1, id, prev, files{"own": "own " + itoa(i), "shared": "shared"}))
		ids = append(ids, id)
	}
	// A second set name with one old set: live, never collected.
	lone := setid.FromTime(now.Add(-100 * day))
	mustCommit(t, r, k, newCommit(t, r, k, "other", lone, setid.ID{}, files{"x": "lone"}))

	// Every object is old, but for one fresh upload not linked yet.
	old := now.Add(-10 * day)
	for _, e := range tree(t, filepath.Join(r.Dir, "objects")) {
		if err := os.Chtimes(filepath.Join(r.Dir, "objects", e), old, old); err != nil {
			t.Fatal(err)
		}
	}
	fresh := []byte("uploaded for a publish in progress")
	if err := r.PutObject(digest.Sum(fresh), int64(len(fresh)), bytes.NewReader(fresh)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(r.ObjectPath(digest.Sum(fresh)), now, now); err != nil {
		t.Fatal(err)
	}
	orphan := []byte("orphan")
	if err := r.PutObject(digest.Sum(orphan), int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(r.ObjectPath(digest.Sum(orphan)), old, old); err != nil {
		t.Fatal(err)
	}
	// Leftovers of crashes: a staging dir, an old and a young temp file.
	for _, d := range []string{"FreeBSD:14:amd64!latest-20261101T000000Z/All", "gc-x-20261101T000000Z", "foreign-old", "foreign-young"} {
		if err := os.MkdirAll(filepath.Join(r.Dir, "staging", d), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(filepath.Join(r.Dir, "staging", d), now, now) // young: Commit's and GC's go anyway
	}
	_ = os.Chtimes(filepath.Join(r.Dir, "staging", "foreign-old"), old, old)
	oldTemp := filepath.Join(r.Dir, ".tmp-SETS.123")
	youngTemp := filepath.Join(filepath.Dir(r.ObjectPath(digest.Sum(fresh))), ".tmp-upload.456")
	for _, p := range []string{oldTemp, youngTemp} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Chtimes(oldTemp, old, old)
	_ = os.Chtimes(youngTemp, now, now)

	// Keep 2, grace 36h: ids[5] (live) and ids[4] by count; ids[3] because
	// its successor ids[4] became live 25h ago; ids[0..2] go.
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Taking the Lock removed the work directories of Commit and GC (crash
	// leftovers under it); GC removes the rest.
	for _, d := range []string{"FreeBSD:14:amd64!latest-20261101T000000Z", "gc-x-20261101T000000Z"} {
		if _, err := os.Stat(filepath.Join(r.Dir, "staging", d)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("work directory %s still there after Lock: %v", d, err)
		}
	}
	// A dry run reports what the real run then does, and changes nothing.
	before := tree(t, r.Dir)
	dry, err := r.GC(t.Context(), Policy{Keep: 2, Grace: 36 * time.Hour, Now: now, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if after := tree(t, r.Dir); !slices.Equal(before, after) {
		t.Errorf("dry run changed the tree")
	}
	rep, err := r.GC(t.Context(), Policy{Keep: 2, Grace: 36 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dry, rep) {
		t.Errorf("dry run reported %+v, the run did %+v", dry, rep)
	}
	wantSets := []string{set1 + "/" + ids[0].String(), set1 + "/" + ids[1].String(), set1 + "/" + ids[2].String()}
	if !slices.Equal(rep.SetsRemoved, wantSets) {
		t.Errorf("SetsRemoved = %v, want %v", rep.SetsRemoved, wantSets)
	}
	// Objects: "own 0..2" and the orphan.
	wantBytes := int64(3*len("own 0") + len(orphan))
	if rep.ObjectsRemoved != 4 || rep.BytesFreed != wantBytes {
		t.Errorf("GC removed %d objects, %d bytes; want 4, %d", rep.ObjectsRemoved, rep.BytesFreed, wantBytes)
	}
	if rep.StagingRemoved != 2 {
		t.Errorf("StagingRemoved = %d, want 2 (the old foreign dir, the old temp)", rep.StagingRemoved)
	}
	if l := leftovers(t, r); !slices.Equal(l, []string{"objects/sha256/" + digest.Sum(fresh).String()[:2] + "/.tmp-upload.456", filepath.Join("staging", "foreign-young")}) {
		t.Errorf("after GC: leftovers %q, want only the young ones", l)
	}
	if ids2, _ := r.SetIDs(set1); !slices.Equal(ids2, ids[3:]) {
		t.Errorf("SetIDs after GC = %v, want %v", ids2, ids[3:])
	}
	for _, id := range ids[3:] {
		checkSet(t, r, k, set1, id)
	}
	checkSet(t, r, k, "other", lone)
	for _, c := range []struct {
		content string
		want    bool
	}{{"own 0", false}, {"own 2", false}, {"own 3", true}, {"shared", true}, {"lone", true}, {string(fresh), true}, {"orphan", false}} {
		if ok, _ := r.HasObject(digest.Sum([]byte(c.content))); ok != c.want {
			t.Errorf("HasObject(%q) after GC = %v, want %v", c.content, ok, c.want)
		}
	}
	if _, err := os.Stat(youngTemp); err != nil {
		t.Errorf("GC removed a young temp file: %v", err)
	}

	// Keep 0, no grace left: only the live sets stay.
	rep, err = r.GC(t.Context(), Policy{Grace: time.Nanosecond, Now: now.Add(100 * day)})
	if err != nil {
		t.Fatal(err)
	}
	if ids2, _ := r.SetIDs(set1); !slices.Equal(ids2, ids[5:]) {
		t.Errorf("SetIDs after GC keep 0 = %v, want only the live %v", ids2, ids[5])
	}
	checkSet(t, r, k, set1, ids[5])
	checkSet(t, r, k, "other", lone)
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyNamesDamage(t *testing.T) {
	r := newRoot(t)
	k := newKeys(t, t.TempDir())
	id := mustID(t, "20261125T031500Z")
	fs1 := files{"All/a.pkg": "aaaa", "All/b.pkg": "bbbb", "All/c.pkg": "cccc", "meta.conf": "m", "z": "z"}
	mustCommit(t, r, k, newCommit(t, r, k, set1, id, setid.ID{}, fs1))
	path := func(rel string) string {
		p, err := r.FilePath(set1, id, rel)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Tamper: same size, other bytes, through the (shared) inode.
	if err := os.Chmod(path("All/a.pkg"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path("All/a.pkg"), []byte("AAAA"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path("All/b.pkg")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path("All/c.pkg"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path("All/c.pkg"), 2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path("All/extra.pkg"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(r.ObjectPath(digest.Sum([]byte("z")))); err != nil {
		t.Fatal(err)
	}
	var checked atomic.Int64
	rep, err := r.VerifyProgress(t.Context(), set1, id, k.v, func(n int64) { checked.Add(n) })
	if err != nil {
		t.Fatal(err)
	}
	if checked.Load() != 14 {
		t.Errorf("progress reported %d bytes, want 14", checked.Load())
	}
	if rep.Files != 5 || rep.Bytes != 14 || rep.OK() {
		t.Errorf("Verify: %d files, OK %v", rep.Files, rep.OK())
	}
	var got []string
	for _, p := range rep.Problems {
		got = append(got, p.Path)
	}
	if want := []string{"All/a.pkg", "All/b.pkg", "All/c.pkg", "All/extra.pkg", "z"}; !slices.Equal(got, want) {
		t.Fatalf("Verify problems at %v, want %v", got, want)
	}
	var me *digest.MismatchError
	if !errors.As(rep.Problems[0].Err, &me) || me.Want != digest.Sum([]byte("aaaa")) || me.Got != digest.Sum([]byte("AAAA")) {
		t.Errorf("tampered file: %v, want a MismatchError", rep.Problems[0].Err)
	}
	if !errors.Is(rep.Problems[1].Err, fs.ErrNotExist) {
		t.Errorf("removed file: %v, want ErrNotExist", rep.Problems[1].Err)
	}
	var se *digest.SizeError
	if !errors.As(rep.Problems[2].Err, &se) || se.Want != 4 || se.Got != 2 {
		t.Errorf("truncated file: %v, want SizeError 4/2", rep.Problems[2].Err)
	}
	if !errors.Is(rep.Problems[3].Err, ErrUnexpectedFile) {
		t.Errorf("extra file: %v, want ErrUnexpectedFile", rep.Problems[3].Err)
	}
	if !errors.Is(rep.Problems[4].Err, ErrObjectMissing) {
		t.Errorf("file without object: %v, want ErrObjectMissing", rep.Problems[4].Err)
	}

	// A manifest signature that does not verify is an error, not a report.
	other := newKeys(t, t.TempDir())
	if _, err := r.Verify(t.Context(), set1, id, other.v); !errors.Is(err, sign.ErrUnknownKey) {
		t.Errorf("Verify with another key = %v, want ErrUnknownKey", err)
	}
	if _, err := r.Verify(t.Context(), "nope", setid.ID{}, k.v); !isNotFound(err) {
		t.Errorf("Verify(unknown set) = %v, want ErrNotFound", err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPutObjectConcurrentSameObject(t *testing.T) {
	r := newRoot(t)
	content := bytes.Repeat([]byte("same object "), 10_000)
	d := digest.Sum(content)
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() { errs <- r.PutObject(d, int64(len(content)), bytes.NewReader(content)) }()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent PutObject = %v", err)
		}
	}
	got, err := os.ReadFile(r.ObjectPath(d))
	if err != nil || !bytes.Equal(got, content) {
		t.Errorf("object after concurrent puts: %d bytes, %v", len(got), err)
	}
	if l := leftovers(t, r); len(l) > 0 {
		t.Errorf("concurrent puts left %v", l)
	}
}

func TestGCInterruptedThenRerun(t *testing.T) {
	for _, step := range []string{"gc-set-moved", "gc-object"} {
		t.Run(step, func(t *testing.T) {
			r := newRoot(t)
			k := newKeys(t, t.TempDir())
			id1, id2 := mustID(t, "20261101T000000Z"), mustID(t, "20261102T000000Z")
			mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"a": "old a", "b": "b"}))
			mustCommit(t, r, k, newCommit(t, r, k, set1, id2, id1, files{"a": "new a", "b": "b"}))
			p := Policy{Grace: time.Hour, Now: time.Now().Add(24 * time.Hour)}
			setHooks(t, func(s string) error {
				if s == step {
					return errors.New("injected")
				}
				return nil
			})
			unlock, err := r.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			defer unlock()
			if _, err := r.GC(t.Context(), p); err == nil {
				t.Fatalf("GC with a fault at %s = nil", step)
			}
			checkSet(t, r, k, set1, id2)
			setHooks(t, func(string) error { return nil })
			if _, err := r.GC(t.Context(), p); err != nil {
				t.Fatal(err)
			}
			if ids, _ := r.SetIDs(set1); !slices.Equal(ids, []setid.ID{id2}) {
				t.Errorf("SetIDs after GC rerun = %v", ids)
			}
			if ok, _ := r.HasObject(digest.Sum([]byte("old a"))); ok {
				t.Errorf("object of the removed set kept")
			}
			if l := leftovers(t, r); len(l) > 0 {
				t.Errorf("leftovers after GC rerun: %v", l)
			}
			checkSet(t, r, k, set1, id2)
		})
	}
}
