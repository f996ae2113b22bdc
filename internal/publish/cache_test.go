package publish

import (
	"maps"
	"path/filepath"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

func TestHashCacheRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "hc")
	c, err := LoadHashCache(path)
	if err != nil {
		t.Fatal(err)
	}
	k := fileKey{Size: 3, Mtime: 1700000000123456789, Ino: 42, Ctime: 1700000001000000001}
	c.store("All/a b.pkg", k, digest.Sum([]byte("abc")))
	c.store("gone", k, digest.Sum([]byte("x")))
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	c2, err := LoadHashCache(path)
	if err != nil {
		t.Fatal(err)
	}
	if sum, ok := c2.lookup("All/a b.pkg", k); !ok || sum != digest.Sum([]byte("abc")) {
		t.Errorf("lookup after reload = %v, %v", sum, ok)
	}
	for _, changed := range []fileKey{
		{Size: 4, Mtime: k.Mtime, Ino: k.Ino, Ctime: k.Ctime},
		{Size: 3, Mtime: k.Mtime + 1, Ino: k.Ino, Ctime: k.Ctime},
		{Size: 3, Mtime: k.Mtime, Ino: 43, Ctime: k.Ctime},
		{Size: 3, Mtime: k.Mtime, Ino: k.Ino, Ctime: k.Ctime + 1},
	} {
		if _, ok := c2.lookup("All/a b.pkg", changed); ok {
			t.Errorf("lookup with key %+v hit; want a miss", changed)
		}
	}
	// Only entries used in this run are saved: "gone" was not looked up.
	if err := c2.Save(); err != nil {
		t.Fatal(err)
	}
	c3, _ := LoadHashCache(path)
	if _, ok := c3.entries["gone"]; ok {
		t.Error("an entry no run used survived Save")
	}
}

// FuzzParseCache: any cache file parses or fails without panicking, and
// what parses survives a Save and a reload unchanged.
func FuzzParseCache(f *testing.F) {
	f.Add([]byte(cacheHeader + "\n" + digest.Sum(nil).String() + " 1 2 3 4 a/b c\n"))
	f.Add([]byte(cacheHeader + "\nxx 1 2 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseCache(data)
		if err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), "hc")
		c := &HashCache{path: path, entries: map[string]cacheEntry{}, next: m}
		if err := c.Save(); err != nil {
			t.Fatal(err)
		}
		c2, err := LoadHashCache(path)
		if err != nil {
			t.Fatalf("reload of a saved cache: %v", err)
		}
		if !maps.Equal(c2.entries, m) {
			t.Fatalf("round trip changed the cache: %v -> %v", m, c2.entries)
		}
	})
}
