package layout

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// FuzzFilePath checks that no set name and path, however hostile, make a
// path outside the set's directory, and that Commit's staging name of every
// valid set is recognised by GC.
func FuzzFilePath(f *testing.F) {
	for _, s := range [][2]string{
		{"FreeBSD:14:amd64/latest", "All/curl-8.10.pkg"},
		{"a", "../x"}, {"a/..", "x"}, {"a", "/etc/passwd"}, {"a/current", "x"},
		{"a", "All/Hashed/x~1$.pkg"}, {"a", ".pkgcdn/manifest"}, {"a\\b", "c"}, {"a", "b/./c"},
	} {
		f.Add(s[0], s[1])
	}
	root := &Root{Dir: filepath.FromSlash("/srv/pkgcdn")}
	id := setid.FromTime(setid.ID{}.Time().AddDate(56, 10, 24))
	f.Fuzz(func(t *testing.T, set, rel string) {
		dir := root.SetDir(set, id)
		p, err := root.FilePath(set, id, rel)
		if err != nil {
			if dir != "" && ValidateSetName(set) != nil {
				t.Fatalf("SetDir(%q) = %q for an invalid name", set, dir)
			}
			return
		}
		if dir == "" {
			t.Fatalf("FilePath(%q, %q) = %q but SetDir = \"\"", set, rel, p)
		}
		r, err := filepath.Rel(dir, p)
		if err != nil || r == "." || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
			t.Fatalf("FilePath(%q, %q) = %q: outside %q", set, rel, p, dir)
		}
		if strings.HasPrefix(filepath.ToSlash(r), ".pkgcdn/") {
			t.Fatalf("FilePath(%q, %q) = %q: inside .pkgcdn", set, rel, p)
		}
		if !isWorkDir(stagingName(set, id)) || !isWorkDir("gc-"+stagingName(set, id)) {
			t.Fatalf("staging name %q of set %q not recognised", stagingName(set, id), set)
		}
	})
}
