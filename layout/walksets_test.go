package layout

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestSetNamesAndBasesWalkTheSameTree: SetNames lists the set directories
// with a `current` link; setBases also those holding only set IDs (a set
// whose publish died before its first swap). "current" is a reserved name
// only inside a set's directory, so a top-level set may be called that.
func TestSetNamesAndBasesWalkTheSameTree(t *testing.T) {
	r, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mk := func(p string) {
		if err := os.MkdirAll(filepath.Join(r.Dir, setsDir, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(set string) {
		if err := os.Symlink("20261125T031500Z", filepath.Join(r.Dir, setsDir, set, currentLink)); err != nil {
			t.Fatal(err)
		}
	}
	mk("FreeBSD:14:amd64/latest/20261125T031500Z")
	link("FreeBSD:14:amd64/latest")
	mk("current/x/20261125T031500Z")
	link("current/x")
	mk("unswapped/20261125T031500Z") // IDs, no current yet
	mk("bad name/20261125T031500Z")  // not a valid set name: skipped
	names, err := r.SetNames()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"FreeBSD:14:amd64/latest", "current/x"}; !slices.Equal(names, want) {
		t.Errorf("SetNames() = %q, want %q", names, want)
	}
	bases, err := r.setBases()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"FreeBSD:14:amd64/latest", "current/x", "unswapped"}; !slices.Equal(bases, want) {
		t.Errorf("setBases() = %q, want %q", bases, want)
	}
}
