package layout

import (
	"bytes"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// refreshed returns c's manifest with a later expiry, re-signed, and SETS
// naming it.
func refreshed(t *testing.T, r *Root, k keys, c Commit, expires time.Time) Commit {
	t.Helper()
	m, err := manifest.Decode(c.ManifestData)
	if err != nil {
		t.Fatal(err)
	}
	m.Expires = expires.UTC().Truncate(time.Second)
	return signCommit(t, r, k, m)
}

func refresh(t *testing.T, r *Root, k keys, c Commit) error {
	t.Helper()
	unlock, err := r.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	return r.Refresh(t.Context(), c, k.v, time.Now())
}

func TestRefresh(t *testing.T) {
	k := newKeys(t, t.TempDir())
	id1, id2 := mustID(t, "20261124T031500Z"), mustID(t, "20261125T031500Z")
	setup := func(t *testing.T) (*Root, Commit) {
		r := newRoot(t)
		mustCommit(t, r, k, newCommit(t, r, k, set1, id1, setid.ID{}, files{"All/a.pkg": "a1"}))
		c := newCommit(t, r, k, set1, id2, id1, files{"All/a.pkg": "a2", "meta.conf": "m"})
		mustCommit(t, r, k, c)
		return r, c
	}
	later := time.Now().Add(90 * 24 * time.Hour)

	t.Run("replaces manifest and SETS, reruns are no-ops", func(t *testing.T) {
		r, c := setup(t)
		n := refreshed(t, r, k, c, later)
		// Fail after each write: a rerun completes it.
		for fail := 1; fail <= 5; fail++ {
			i := 0
			setHooks(t, func(s string) error {
				if s == "refresh-written" {
					if i++; i == fail {
						return errors.New("injected")
					}
				}
				return nil
			})
			err := refresh(t, r, k, n)
			setHooks(t, func(string) error { return nil })
			if fail < 5 && err == nil {
				t.Fatalf("Refresh with a fault after write %d = nil", fail)
			}
		}
		if err := refresh(t, r, k, n); err != nil {
			t.Fatalf("Refresh = %v", err)
		}
		data, sig, err := r.Manifest(set1, id2)
		if err != nil || !bytes.Equal(data, n.ManifestData) || !bytes.Equal(sig, n.ManifestSig) {
			t.Errorf("Manifest after Refresh is not the refreshed one (%v)", err)
		}
		if fi, err := os.Stat(r.SetDir(set1, id2) + "/.pkgcdn/manifest"); err != nil || fi.Mode().Perm() != 0o444 {
			t.Errorf("refreshed manifest mode %v (%v), want 0444", fi.Mode().Perm(), err)
		}
		sd, ss, err := r.Sets()
		if err != nil || !bytes.Equal(sd, n.SetsData) || !bytes.Equal(ss, n.SetsSig) {
			t.Errorf("SETS after Refresh is not the refreshed one (%v)", err)
		}
		rep, err := r.Verify(t.Context(), set1, id2, k.v)
		if err != nil || !rep.OK() {
			t.Fatalf("Verify after Refresh = %v, %v", rep, err)
		}
		if got := rep; !got.OK() {
			t.Errorf("problems %v", got.Problems)
		}
	})
	for _, tc := range []struct {
		name string
		make func(t *testing.T, r *Root, c Commit) Commit
		want error
	}{
		{"changed entries", func(t *testing.T, r *Root, c Commit) Commit {
			m, _ := manifest.Decode(c.ManifestData)
			m.Expires = later.UTC().Truncate(time.Second)
			m.Entries[0].Size++
			return signCommit(t, r, k, m)
		}, ErrNotRefresh},
		{"earlier expiry", func(t *testing.T, r *Root, c Commit) Commit {
			m, _ := manifest.Decode(c.ManifestData)
			return refreshed(t, r, k, c, m.Expires.Add(-time.Hour))
		}, ErrNotRefresh},
		{"not the live set", func(t *testing.T, r *Root, c Commit) Commit {
			data, sig, _ := r.Manifest(set1, id1)
			return refreshed(t, r, k, Commit{ManifestData: data, ManifestSig: sig}, later)
		}, ErrConflict},
		{"stale SETS", func(t *testing.T, r *Root, c Commit) Commit {
			n := refreshed(t, r, k, c, later)
			s, _ := setid.ParseSets(bytes.NewReader(n.SetsData))
			n.SetsData, n.SetsSig = manifest.SignSets(s.With(setid.Entry{Set: "x", ID: id1, Manifest: digest.Sum(nil)}), k.signer)
			return n
		}, ErrSetsChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c := setup(t)
			before := tree(t, r.Dir)
			sd, _, _ := r.Sets()
			err := refresh(t, r, k, tc.make(t, r, c))
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Refresh = %v, want %v", err, tc.want)
			}
			if after := tree(t, r.Dir); !slices.Equal(before, after) {
				t.Errorf("refused Refresh changed the tree")
			}
			if sd2, _, _ := r.Sets(); !bytes.Equal(sd, sd2) {
				t.Errorf("refused Refresh changed SETS")
			}
			data, _, _ := r.Manifest(set1, id2)
			if !bytes.Equal(data, c.ManifestData) {
				t.Errorf("refused Refresh changed the manifest")
			}
		})
	}
}
