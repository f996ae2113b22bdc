package publish

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/setid"
)

func TestSeenIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", "seen-ids.json")
	id := func(min int) setid.ID { return setid.FromTime(time.Unix(1_800_000_000+int64(min)*60, 0)) }
	const m1, m2 = "http://m1/", "http://m2/"
	if err := recordSeen(path, m1, setid.Sets{{Set: "a", ID: id(2)}, {Set: "b", ID: id(5)}}); err != nil {
		t.Fatal(err)
	}
	// Merging keeps the newer of each: a lost race only makes it older.
	if err := recordSeen(path, m1, setid.Sets{{Set: "a", ID: id(1)}, {Set: "b", ID: id(6)}}); err != nil {
		t.Fatal(err)
	}
	s, err := loadSeen(path)
	if err != nil {
		t.Fatal(err)
	}
	if s[m1]["a"] != id(2) || s[m1]["b"] != id(6) {
		t.Fatalf("seen %v, want a at %s and b at %s", s[m1], id(2), id(6))
	}
	for _, tc := range []struct {
		name   string
		master string
		sets   setid.Sets
		ok     bool
	}{
		{"same", m1, setid.Sets{{Set: "a", ID: id(2)}, {Set: "b", ID: id(6)}}, true},
		{"newer, and a new set", m1, setid.Sets{{Set: "a", ID: id(3)}, {Set: "b", ID: id(7)}, {Set: "c", ID: id(1)}}, true},
		{"one older", m1, setid.Sets{{Set: "a", ID: id(2)}, {Set: "b", ID: id(5)}}, false},
		{"one missing", m1, setid.Sets{{Set: "b", ID: id(6)}}, false},
		{"another master", m2, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.check(tc.master, path, tc.sets)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, setid.ErrRollback)) {
				t.Errorf("check = %v, want ok %v (else setid.ErrRollback)", err, tc.ok)
			}
		})
	}
	if err := os.WriteFile(path, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSeen(path); err == nil {
		t.Error("a corrupt seen-IDs file loaded")
	}
	if s, err := loadSeen(filepath.Join(t.TempDir(), "none")); err != nil || len(s) != 0 {
		t.Errorf("a missing seen-IDs file = %v, %v; want empty", s, err)
	}
}
