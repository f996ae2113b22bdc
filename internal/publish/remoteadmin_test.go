package publish

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// forgeManifest replaces, behind the master's back, the manifest of set id
// in root with m signed by signer, and (if setsSigner is not nil, and the
// set is live) SETS with one naming it, signed by setsSigner.
func forgeManifest(t *testing.T, root *layout.Root, m *manifest.Manifest, signer, setsSigner *sign.Signer) {
	t.Helper()
	data, sig, err := m.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	dir := root.SetDir(m.Set, m.ID)
	for name, b := range map[string][]byte{layout.ManifestFile: data, layout.ManifestSigFile: sig} {
		writeOver(t, filepath.Join(dir, filepath.FromSlash(name)), b)
	}
	if live, _ := root.Live(m.Set); setsSigner == nil || live != m.ID {
		return
	}
	sd, _, err := root.Sets()
	if err != nil {
		t.Fatal(err)
	}
	sets, err := setid.ParseSets(bytes.NewReader(sd))
	if err != nil {
		t.Fatal(err)
	}
	sd, ss := manifest.SignSets(sets.With(setid.Entry{Set: m.Set, ID: m.ID, Manifest: digest.Sum(data)}), setsSigner)
	writeOver(t, filepath.Join(root.Dir, "SETS"), sd)
	writeOver(t, filepath.Join(root.Dir, "SETS.minisig"), ss)
}

// writeOver replaces the file at p (read-only or not) with b.
func writeOver(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o444); err != nil {
		t.Fatal(err)
	}
}

// snapshotRoot returns the SETS and the manifest of set id in root.
func snapshotRoot(t *testing.T, root *layout.Root, id setid.ID) (sets, man []byte) {
	t.Helper()
	sets, _, err := root.Sets()
	if err != nil {
		t.Fatal(err)
	}
	man, _, err = root.Manifest(testSet, id)
	if err != nil {
		t.Fatal(err)
	}
	return sets, man
}

// newRemote returns a publish config, its public key, a fake master
// trusting it, a client of that master, and an empty source directory.
func newRemote(t *testing.T) (Config, string, *fakeMaster, *Client, string) {
	t.Helper()
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	return cfg, pub, fm, newClient(t, srv.URL, fm.token), t.TempDir()
}

func TestRefreshRemote(t *testing.T) {
	cfg, pub, fm, c, src := newRemote(t)
	writeTree(t, src, map[string]string{"All/a.pkg": "a", "meta.conf": "m"})
	cfg.Valid = 48 * time.Hour
	r1, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	before := liveManifest(t, fm.root, testSet, pub)
	puts := fm.putCount()

	cfg.Valid = 30 * 24 * time.Hour
	r2, err := RefreshRemote(t.Context(), cfg, c, r1.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r2.ID != r1.ID {
		t.Fatalf("RefreshRemote changed the set ID: %s -> %s", r1.ID, r2.ID)
	}
	after := checkConsistent(t, fm.root, testSet, pub)
	if !after.Expires.After(before.Expires.Add(20*24*time.Hour)) || !after.Created.Equal(before.Created) || len(after.Entries) != 2 {
		t.Errorf("after refresh: created %v expires %v, %d files; want created %v, expiry about 30 days on, 2 files",
			after.Created, after.Expires, len(after.Entries), before.Created)
	}
	if ids, _ := fm.root.SetIDs(testSet); len(ids) != 1 || fm.putCount() != puts {
		t.Errorf("refresh made sets %v, sent %d objects; want one set, nothing sent", ids, fm.putCount()-puts)
	}
	// A shorter --valid than the expiry left (a daily cron) is no error
	// and keeps the later expiry.
	short := cfg
	short.Valid = time.Hour
	if _, err := RefreshRemote(t.Context(), short, c, r1.ID); err != nil {
		t.Errorf("RefreshRemote with a shorter validity = %v, want the expiry kept", err)
	}
	if m := checkConsistent(t, fm.root, testSet, pub); !m.Expires.Equal(after.Expires) {
		t.Errorf("a shorter --valid moved the expiry from %v to %v", after.Expires, m.Expires)
	}
	// The refreshed set is live and announced: an unchanged publish is a no-op.
	if r3, err := PublishRemote(t.Context(), cfg, c, src); err != nil || r3.New || r3.ID != r1.ID {
		t.Errorf("publish after refresh = %+v, %v; want no new set", r3, err)
	}

	other := cfg
	other.Set = "debian/none"
	if _, err := RefreshRemote(t.Context(), other, c, r1.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("RefreshRemote of a set never published = %v, want ErrNotFound", err)
	}
	if _, err := RefreshRemote(t.Context(), cfg, c, setid.FromTime(r1.ID.Time().Add(-time.Hour))); !errors.Is(err, ErrNotLive) {
		t.Errorf("RefreshRemote naming another live ID = %v, want ErrNotLive", err)
	}
	if _, err := RefreshRemote(t.Context(), cfg, c, setid.ID{}); !errors.Is(err, ErrConfig) {
		t.Errorf("RefreshRemote without the live ID = %v, want ErrConfig", err)
	}

	// A master that offers other files, or another SETS, gets nothing
	// signed by this key.
	forged := *after
	forged.Entries = append(forged.Entries, manifest.Entry{Path: "evil.pkg", Size: 1, SHA256: digest.Sum([]byte("x")), Modified: forged.ID})
	forged.Sort()
	stranger, _ := newKey(t)
	for _, tc := range []struct {
		name       string
		setsSigner *sign.Signer
	}{{"manifest signed by another key", nil}, {"manifest and SETS signed by another key", stranger}} {
		t.Run(tc.name, func(t *testing.T) {
			forgeManifest(t, fm.root, &forged, stranger, tc.setsSigner)
			sets, man := snapshotRoot(t, fm.root, r1.ID)
			if _, err := RefreshRemote(t.Context(), cfg, c, r1.ID); !errors.Is(err, sign.ErrUnknownKey) {
				t.Errorf("RefreshRemote = %v, want sign.ErrUnknownKey", err)
			}
			if s2, m2 := snapshotRoot(t, fm.root, r1.ID); !bytes.Equal(sets, s2) || !bytes.Equal(man, m2) {
				t.Error("a refused refresh changed the master")
			}
			// With that key trusted (another publisher), it goes through.
			trusting := cfg
			trusting.TrustedKeys = []string{stranger.Public()}
			if _, err := RefreshRemote(t.Context(), trusting, c, r1.ID); err != nil {
				t.Errorf("RefreshRemote trusting the other key = %v", err)
			}
		})
	}
}

// TestRefreshRemoteCompletesInterrupted: a master that died inside a
// refresh is repaired by refreshing again. It writes the manifest's
// signature, the manifest, then SETS: after the signature alone, the old
// manifest still matches SETS (a publish works); after the manifest too,
// only a refresh repairs it, and a publish says so.
func TestRefreshRemoteCompletesInterrupted(t *testing.T) {
	for _, manifestWritten := range []bool{false, true} {
		t.Run(fmt.Sprintf("manifest written %v", manifestWritten), func(t *testing.T) {
			cfg, pub, fm, c, src := newRemote(t)
			writeTree(t, src, map[string]string{"a": "1"})
			r1, err := PublishRemote(t.Context(), cfg, c, src)
			if err != nil {
				t.Fatal(err)
			}
			m := liveManifest(t, fm.root, testSet, pub)
			m.Expires = m.Expires.Add(time.Hour)
			data, sig, err := m.Sign(cfg.Signer)
			if err != nil {
				t.Fatal(err)
			}
			dir := fm.root.SetDir(testSet, r1.ID)
			writeOver(t, filepath.Join(dir, filepath.FromSlash(layout.ManifestSigFile)), sig)
			if manifestWritten {
				writeOver(t, filepath.Join(dir, filepath.FromSlash(layout.ManifestFile)), data)
				if _, err := PublishRemote(t.Context(), cfg, c, src); err == nil {
					t.Fatal("publish over a half-refreshed master went through; want the digest mismatch")
				}
			} else if r, err := PublishRemote(t.Context(), cfg, c, src); err != nil || r.New {
				t.Fatalf("unchanged publish with only the new signature written = %+v, %v", r, err)
			}
			if _, err := RefreshRemote(t.Context(), cfg, c, r1.ID); err != nil {
				t.Fatalf("RefreshRemote over a half-refreshed master = %v", err)
			}
			checkConsistent(t, fm.root, testSet, pub)
			writeTree(t, src, map[string]string{"a": "2"})
			if r, err := PublishRemote(t.Context(), cfg, c, src); err != nil || !r.New {
				t.Errorf("publish after the repair = %+v, %v", r, err)
			}
		})
	}
}

func TestRollbackRemote(t *testing.T) {
	cfg, pub := remoteConfig(t)
	publishAll := func(t *testing.T, files map[string]string) (*fakeMaster, *Client, []Result) {
		fm, srv := newFakeMaster(t, pub)
		c := newClient(t, srv.URL, fm.token)
		src := t.TempDir()
		var rs []Result
		for _, f := range []map[string]string{{"All/a.pkg": "a1", "meta.conf": "m"}, files} {
			writeTree(t, src, f)
			r, err := PublishRemote(t.Context(), cfg, c, src)
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		return fm, c, rs
	}

	t.Run("publishes the old content as a new ID", func(t *testing.T) {
		fm, c, rs := publishAll(t, map[string]string{"All/a.pkg": "a2", "All/b.pkg": "b"})
		puts := fm.putCount()
		r, err := RollbackRemote(t.Context(), cfg, c, rs[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		m := checkConsistent(t, fm.root, testSet, pub)
		if !r.New || !r.ID.After(rs[1].ID) || m.ID != r.ID || m.Previous != rs[1].ID {
			t.Errorf("rollback = %+v, live %s (previous %s); want a new ID after %s", r, m.ID, m.Previous, rs[1].ID)
		}
		// src still holds b.pkg, but the rollback is of set 1's content.
		e, ok := m.Lookup("All/a.pkg")
		if len(m.Entries) != 2 || !ok || e.SHA256 != digest.Sum([]byte("a1")) {
			t.Errorf("rolled back to %v, want set 1's two files", m.Entries)
		}
		if fm.putCount() != puts {
			t.Errorf("rollback sent %d objects, want none", fm.putCount()-puts)
		}
	})
	t.Run("refusals change nothing", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			damage func(t *testing.T, fm *fakeMaster, rs []Result) setid.ID
			want   error
		}{
			{"not retained", func(t *testing.T, fm *fakeMaster, rs []Result) setid.ID {
				return setid.FromTime(rs[0].ID.Time().Add(-time.Hour))
			}, ErrNotFound},
			{"objects collected", func(t *testing.T, fm *fakeMaster, rs []Result) setid.ID {
				if err := os.Remove(fm.root.ObjectPath(digest.Sum([]byte("a1")))); err != nil {
					t.Fatal(err)
				}
				return rs[0].ID
			}, ErrMissingObjects},
			{"old manifest signed by another key", func(t *testing.T, fm *fakeMaster, rs []Result) setid.ID {
				data, _, err := fm.root.Manifest(testSet, rs[0].ID)
				if err != nil {
					t.Fatal(err)
				}
				m, err := manifest.Decode(data)
				if err != nil {
					t.Fatal(err)
				}
				stranger, _ := newKey(t)
				forgeManifest(t, fm.root, m, stranger, nil)
				return rs[0].ID
			}, sign.ErrUnknownKey},
		} {
			t.Run(tc.name, func(t *testing.T) {
				fm, c, rs := publishAll(t, map[string]string{"All/a.pkg": "a2"})
				to := tc.damage(t, fm, rs)
				_, err := RollbackRemote(t.Context(), cfg, c, to)
				if !errors.Is(err, tc.want) {
					t.Fatalf("RollbackRemote = %v, want %v", err, tc.want)
				}
				if live, _ := fm.root.Live(testSet); live != rs[1].ID {
					t.Errorf("live set %s after a refused rollback, want %s", live, rs[1].ID)
				}
			})
		}
	})
}

func TestListRemote(t *testing.T) {
	cfg, _, fm, c, src := newRemote(t)
	var ids []setid.ID
	for _, content := range []string{"1", "22", "333"} {
		writeTree(t, src, map[string]string{"a": content})
		r, err := PublishRemote(t.Context(), cfg, c, src)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID)
	}
	other := cfg
	other.Set = "debian/stable"
	if _, err := PublishRemote(t.Context(), other, c, src); err != nil {
		t.Fatal(err)
	}

	infos, err := ListRemote(t.Context(), nil, c.base.String(), testSet)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 {
		t.Fatalf("ListRemote = %+v, want the 3 sets of %s", infos, testSet)
	}
	for i, in := range infos {
		if in.Set != testSet || in.ID != ids[i] || in.Live != (i == 2) || in.Files != 1 || in.Bytes != int64(i+1) || in.Err != nil {
			t.Errorf("set %d: %+v, want %s with %d bytes, live %v", i, in, ids[i], i+1, i == 2)
		}
	}
	if all, err := ListRemote(t.Context(), nil, c.base.String(), ""); err != nil || len(all) != 4 {
		t.Errorf("ListRemote of every set = %d sets, %v; want 4", len(all), err)
	}

	// The oldest set collected: the list ends before it.
	if err := os.RemoveAll(fm.root.SetDir(testSet, ids[0])); err != nil {
		t.Fatal(err)
	}
	if infos, err := ListRemote(t.Context(), nil, c.base.String(), testSet); err != nil || len(infos) != 2 || infos[0].ID != ids[1] {
		t.Errorf("after the oldest was collected: %+v, %v; want the 2 newer sets", infos, err)
	}
	// The live manifest unreadable: listed with its error.
	if err := os.RemoveAll(fm.root.SetDir(testSet, ids[2])); err != nil {
		t.Fatal(err)
	}
	if infos, err := ListRemote(t.Context(), nil, c.base.String(), testSet); err != nil || len(infos) != 1 || infos[0].Err == nil || !infos[0].Live {
		t.Errorf("live manifest gone: %+v, %v; want the live set listed with an error", infos, err)
	}
	if _, err := ListRemote(t.Context(), nil, "ftp://x", ""); !errors.Is(err, ErrConfig) {
		t.Errorf("ListRemote of an ftp URL = %v, want ErrConfig", err)
	}
}

// TestRemoteRefusesLiveFarAhead: a live set dated far ahead of this host's
// clock (a master's lie, or a publisher's broken clock) is not built on:
// every later set ID would follow it.
func TestRemoteRefusesLiveFarAhead(t *testing.T) {
	cfg, _, fm, c, src := newRemote(t)
	writeTree(t, src, map[string]string{"a": "1"})
	ahead := cfg
	ahead.Now = func() time.Time { return time.Now().Add(3 * 24 * time.Hour) }
	r1, err := PublishRemote(t.Context(), ahead, c, src)
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, src, map[string]string{"a": "2"})
	if _, err := PublishRemote(t.Context(), cfg, c, src); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("publish over a live set 3 days ahead = %v, want a refusal naming the clocks", err)
	}
	if _, err := RollbackRemote(t.Context(), cfg, c, r1.ID); err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("rollback over a live set 3 days ahead = %v, want a refusal naming the clocks", err)
	}
	if live, _ := fm.root.Live(testSet); live != r1.ID {
		t.Errorf("live set %s, want %s unchanged", live, r1.ID)
	}
}

// TestListRemoteHostileServer: a server that answers for the older ID with
// the newer manifest again (a loop, were its word taken) gets that ID
// listed with the mismatch, and the list ends. (Decode refuses a Previous
// not older than the ID, so the walk always goes back in time.)
func TestListRemoteHostileServer(t *testing.T) {
	id1, id2 := setid.FromTime(time.Unix(1_800_000_000, 0)), setid.FromTime(time.Unix(1_800_000_060, 0))
	m := &manifest.Manifest{Set: testSet, ID: id2, Previous: id1, Created: id2.Time(), Expires: id2.Time().Add(time.Hour)}
	m2, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/.pkgcdn/sets", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(setid.Sets{{Set: testSet, ID: id2, Manifest: digest.Sum(m2)}}.Bytes())
	})
	for _, id := range []setid.ID{id1, id2} {
		mux.HandleFunc("/.pkgcdn/manifest/"+testSet+"/"+id.String(), func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(m2) })
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	infos, err := ListRemote(t.Context(), nil, srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 2 || infos[0].ID != id1 || !errors.Is(infos[0].Err, manifest.ErrMismatch) || infos[1].ID != id2 || !infos[1].Live {
		t.Errorf("ListRemote = %+v, want %s with a mismatch, then the live %s", infos, id1, id2)
	}
}

// TestRemoteRefusesReplayedSETS: a master that offers an older SETS (and
// live manifest), validly signed, is refused once the seen-IDs file knows
// a newer one: a publish would build on the old set (or find "nothing
// changed" in a revert), a refresh re-sign it as current.
func TestRemoteRefusesReplayedSETS(t *testing.T) {
	cfg, _, fm, c, src := newRemote(t)
	cfg.SeenFile = filepath.Join(t.TempDir(), "seen-ids.json")
	r1 := publishFiles(t, cfg, c, src, map[string]string{"a": "1"})
	oldSets, oldSig, err := fm.root.Sets()
	if err != nil {
		t.Fatal(err)
	}
	r2 := publishFiles(t, cfg, c, src, map[string]string{"a": "2"})
	writeOver(t, filepath.Join(fm.root.Dir, "SETS"), oldSets)
	writeOver(t, filepath.Join(fm.root.Dir, "SETS.minisig"), oldSig)

	writeTree(t, src, map[string]string{"a": "1"}) // a revert to set 1's content
	if r, err := PublishRemote(t.Context(), cfg, c, src); !errors.Is(err, setid.ErrRollback) {
		t.Errorf("publish over a replayed SETS = %+v, %v; want setid.ErrRollback", r, err)
	}
	if _, err := RefreshRemote(t.Context(), cfg, c, r1.ID); !errors.Is(err, setid.ErrRollback) {
		t.Errorf("refresh over a replayed SETS = %v, want setid.ErrRollback", err)
	}
	if _, err := RollbackRemote(t.Context(), cfg, c, r1.ID); !errors.Is(err, setid.ErrRollback) {
		t.Errorf("rollback over a replayed SETS = %v, want setid.ErrRollback", err)
	}
	if sets, _, _ := fm.root.Sets(); !bytes.Equal(sets, oldSets) {
		t.Error("a refused call changed the master's SETS")
	}
	// The record is per master: another master at another URL is new.
	other := newClient(t, c.base.String()+"/other/", fm.token)
	if _, err := RefreshRemote(t.Context(), cfg, other, r2.ID); errors.Is(err, setid.ErrRollback) {
		t.Errorf("a master at another URL was judged by this one's record: %v", err)
	}
}

// publishFiles writes files into src and publishes it with cfg.
func publishFiles(t *testing.T, cfg Config, c *Client, src string, files map[string]string) Result {
	t.Helper()
	writeTree(t, src, files)
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
