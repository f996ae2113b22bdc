package edge

import (
	"runtime"
	"strconv"
	"sync"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// smallCache keeps small objects of the disk cache in memory, so that a
// hit on one is answered without opening a file: each was checked against
// its sha256 when it was put. It is safe for concurrent use.
//
// The bytes live in one anonymous memory mapping (an "arena"), outside the
// Go heap, used as a ring: an object goes after the previous one, and the
// oldest ones it overwrites are forgotten (first in, first out). Why not
// the Go heap: pkgserve collects garbage at 400% heap growth (GOGC), so
// every live megabyte there costs up to five of RSS, and a few MiB of
// small files would break the edge's RSS budget. In the arena a megabyte
// costs one, and only once touched.
type smallCache struct {
	maxObj int

	mu    sync.RWMutex // guards arena's contents, items, order, head
	arena []byte
	head  int64 // where the next object goes, counted from the start, never wrapped
	items map[digest.SHA256]smallItem
	order []smallRef // objects in arena order, oldest first (stale ones skipped)
}

// smallItem is one object in the arena.
type smallItem struct {
	at   int64 // its first byte, as head counts
	n    int
	etag []string // {`"<sha256>"`}, for a header map
	clen []string // {"<n>"}, for a header map
}

type smallRef struct {
	key digest.SHA256
	at  int64
}

// newSmallCache returns a cache of arenaBytes holding objects of at most
// maxObj bytes, or nil if arenaBytes is not positive or the arena cannot
// be mapped.
func newSmallCache(arenaBytes int64, maxObj int) *smallCache {
	if arenaBytes <= 0 {
		return nil
	}
	arena, err := mapArena(int(arenaBytes))
	if err != nil {
		return nil
	}
	c := &smallCache{maxObj: maxObj, arena: arena, items: make(map[digest.SHA256]smallItem)}
	runtime.AddCleanup(c, unmapArena, arena)
	return c
}

// copyTo appends object key to dst if the cache holds it, and returns the
// result with the object's ETag and Content-Length header values.
func (c *smallCache) copyTo(dst []byte, key digest.SHA256) (out []byte, etag, clen []string, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	it, ok := c.items[key]
	if !ok {
		return dst, nil, nil, false
	}
	at := it.at % int64(len(c.arena))
	return append(dst, c.arena[at:at+int64(it.n)]...), it.etag, it.clen, true
}

// put keeps b as object key if it is the bytes whose sha256 is key and it
// fits; it reports whether b verified (a mismatch is a damaged copy: the
// caller must not serve it).
func (c *smallCache) put(key digest.SHA256, b []byte) bool {
	if digest.Sum(b) != key {
		return false
	}
	if len(b) > c.maxObj || len(b) > len(c.arena) {
		return true
	}
	it := smallItem{n: len(b), etag: []string{etagOf(key)}, clen: []string{strconv.Itoa(len(b))}}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[key]; ok {
		return true // put meanwhile by another request
	}
	size := int64(len(c.arena))
	at := c.head
	if at%size+int64(len(b)) > size { // does not fit before the end: start over
		at += size - at%size
	}
	end := at + int64(len(b))
	// Forget what the new bytes overwrite: every object that starts more
	// than one arena before their end (its bytes lie one lap behind).
	drop := 0
	for ; drop < len(c.order) && c.order[drop].at < end-size; drop++ {
		r := c.order[drop]
		if cur, ok := c.items[r.key]; ok && cur.at == r.at {
			delete(c.items, r.key)
		}
	}
	c.order = append(c.order[drop:], smallRef{key: key, at: at})
	it.at = at
	copy(c.arena[at%size:], b)
	c.items[key] = it
	c.head = end
	return true
}
