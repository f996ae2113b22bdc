package publish

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// The hash cache file, one per source tree, is text:
//
//	pkgcdn-hashcache v1
//	<sha256 hex> <size> <mtime ns> <inode> <ctime ns> <path>
//	...
//
// A line is trusted only if size, mtime, inode and ctime all still match the
// file (rsync's quick check, plus inode and ctime, which a copy or an
// in-place rewrite that restores the mtime cannot keep).
const cacheHeader = "pkgcdn-hashcache v1"

// HashCache remembers the sha256 of source files by their quick-check key,
// so an unchanged republish does not read file bytes again. It is safe for
// concurrent use.
type HashCache struct {
	path string

	mu      sync.Mutex // guards entries, next
	entries map[string]cacheEntry
	next    map[string]cacheEntry // what Save writes: entries seen in this run
}

type cacheEntry struct {
	key fileKey
	sum digest.SHA256
}

// ErrBadCache is returned by LoadHashCache for a cache file it cannot parse.
// The cache returned alongside it is empty and usable: a cache only saves time.
var ErrBadCache = errors.New("hash cache unreadable")

// LoadHashCache reads the cache file at path. A missing file is an empty
// cache. A corrupt one is an empty cache plus an error wrapping ErrBadCache,
// which a caller may log and ignore; Save then replaces it.
func LoadHashCache(path string) (*HashCache, error) {
	c := &HashCache{path: path, entries: map[string]cacheEntry{}, next: map[string]cacheEntry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadCache, err)
	}
	entries, err := parseCache(data)
	if err != nil {
		return c, fmt.Errorf("%w: %s: %v", ErrBadCache, path, err)
	}
	c.entries = entries
	return c, nil
}

func parseCache(data []byte) (map[string]cacheEntry, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	if !sc.Scan() || sc.Text() != cacheHeader {
		return nil, errors.New("bad header")
	}
	m := map[string]cacheEntry{}
	for line := 2; sc.Scan(); line++ {
		f := strings.SplitN(sc.Text(), " ", 6)
		if len(f) != 6 {
			return nil, fmt.Errorf("line %d: want 6 fields", line)
		}
		var e cacheEntry
		var err1, err2, err3, err4, err5 error
		e.sum, err1 = digest.Parse(f[0])
		e.key.Size, err2 = strconv.ParseInt(f[1], 10, 64)
		e.key.Mtime, err3 = strconv.ParseInt(f[2], 10, 64)
		e.key.Ino, err4 = strconv.ParseUint(f[3], 10, 64)
		e.key.Ctime, err5 = strconv.ParseInt(f[4], 10, 64)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		m[f[5]] = e
	}
	return m, sc.Err()
}

// lookup returns the cached digest of path if its key is unchanged.
func (c *HashCache) lookup(path string, k fileKey) (digest.SHA256, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[path]
	if !ok || e.key != k {
		return digest.SHA256{}, false
	}
	c.next[path] = e
	return e.sum, true
}

// has reports whether the cache holds an entry for path, whatever its key.
func (c *HashCache) has(path string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[path]
	return ok
}

// store records the digest of path under key k for the next Save.
func (c *HashCache) store(path string, k fileKey, sum digest.SHA256) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next[path] = cacheEntry{key: k, sum: sum}
}

// Save atomically writes the entries looked up or stored since Load (files
// no longer in the tree are dropped), unless they are exactly the entries
// loaded. The directory is created if needed.
func (c *HashCache) Save() error {
	c.mu.Lock()
	if maps.Equal(c.entries, c.next) {
		// Nothing changed since Load: spare the write and its fsyncs.
		c.mu.Unlock()
		return nil
	}
	paths := make([]string, 0, len(c.next))
	for p := range c.next {
		paths = append(paths, p)
	}
	var b bytes.Buffer
	b.Grow(64 + 130*len(paths))
	b.WriteString(cacheHeader + "\n")
	slices.Sort(paths)
	for _, p := range paths {
		e := c.next[p]
		fmt.Fprintf(&b, "%s %d %d %d %d %s\n", e.sum, e.key.Size, e.key.Mtime, e.key.Ino, e.key.Ctime, p)
	}
	c.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("save hash cache: %w", err)
	}
	if err := atomicfile.WriteFile(c.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("save hash cache: %w", err)
	}
	return nil
}

// DefaultHashCachePath returns where the hash cache of source tree srcDir
// lives unless told otherwise: $XDG_CACHE_HOME/pkgcdn/ (or ~/.cache/pkgcdn/),
// in a file named after srcDir's absolute path.
func DefaultHashCachePath(srcDir string) (string, error) {
	abs, err := filepath.Abs(srcDir)
	if err != nil {
		return "", err
	}
	base, err := cacheDir()
	if err != nil {
		return "", fmt.Errorf("hash cache location: %w", err)
	}
	// The name is readable (the path with "/" as "_") and unique (a short
	// hash of the exact path, since "_" may also appear in a path).
	name := strings.Trim(strings.ReplaceAll(filepath.ToSlash(abs), "/", "_"), "_")
	if len(name) > 150 {
		name = name[len(name)-150:]
	}
	sum := digest.Sum([]byte(abs)).String()[:12]
	return filepath.Join(base, "hashcache-"+name+"-"+sum), nil
}

// cacheDir is this user's pkgcdn cache directory: $XDG_CACHE_HOME/pkgcdn,
// or ~/.cache/pkgcdn.
func cacheDir() (string, error) {
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" || !filepath.IsAbs(base) {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "pkgcdn"), nil
}
