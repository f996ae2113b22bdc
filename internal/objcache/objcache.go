// Package objcache keeps small immutable objects in memory, keyed by their
// sha256, so that a small file is served without touching the disk (open,
// read, close) on every request. Every object was checked against its
// digest when it was put: a damaged or tampered copy on disk is refused,
// never kept. pkgcdn's objects are content-addressed, so an entry never
// goes stale: a set switch, a GC or a republish changes which objects are
// asked for, never what the bytes of one are.
//
// The bytes live in one anonymous memory mapping (an arena) outside the Go
// heap, used as a ring: an object goes after the previous one, and the
// oldest ones it overwrites are forgotten (first in, first out). Why not
// the Go heap: pkgserve collects garbage only at 400% heap growth (GOGC),
// so every live megabyte there would cost up to five of RSS. In the arena
// a megabyte costs one, and only once touched. Readers copy an object out
// under a read lock (AppendTo), so a later Put can never change bytes
// being sent.
package objcache

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBytes       = 64 << 20
	DefaultMaxObjectBytes = 64 << 10
)

// Config configures a Cache.
type Config struct {
	// MaxBytes is the size of the arena: the memory the objects' bytes
	// may take (their index, a few dozen bytes an object, is on the heap).
	// If zero, 64 MiB; if negative, nothing is kept (Get loads and
	// verifies every time). At most MaxArenaBytes.
	MaxBytes int64
	// MaxObjectBytes is the largest object kept; bigger ones are verified
	// but not kept. If zero, 64 KiB.
	MaxObjectBytes int
}

// Headers are an object's response header values, ready for a header map
// and shared: they must not be modified.
type Headers struct {
	ETag          []string // {`"<sha256 hex>"`}
	ContentLength []string // {size in decimal}
}

// Stats are a Cache's counters.
type Stats struct {
	Hits    int64 // lookups answered from memory
	Loads   int64 // objects checked and put (by Put, or by Get after a load)
	Objects int   // objects held now
	Bytes   int64 // bytes of the objects held now
}

// Cache is a bounded cache of verified objects. It is safe for concurrent
// use.
type Cache struct {
	maxObj int
	hits   atomic.Int64
	loads  atomic.Int64

	mu    sync.RWMutex // guards the arena's contents, items, order, head, bytes
	arena []byte       // nil: the cache keeps nothing
	head  int64        // where the next object goes, counted from the start, never wrapped
	items map[digest.SHA256]item
	order []ref // objects in arena order, oldest first (forgotten ones skipped)
	bytes int64
}

// item is one object in the arena.
type item struct {
	at int64 // its first byte, as head counts
	n  int
	h  Headers
}

type ref struct {
	key digest.SHA256
	at  int64
}

// New returns an empty Cache. If its arena cannot be mapped, the cache
// keeps nothing (and still verifies what Get loads).
func New(cfg Config) *Cache {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = DefaultMaxObjectBytes
	}
	c := &Cache{maxObj: cfg.MaxObjectBytes, items: make(map[digest.SHA256]item)}
	if cfg.MaxBytes > 0 {
		if arena, err := mapArena(int(min(cfg.MaxBytes, MaxArenaBytes))); err == nil {
			c.arena = arena
			runtime.AddCleanup(c, unmapArena, arena)
		}
	}
	return c
}

// MaxArenaBytes is the largest arena: a bigger Config.MaxBytes gets this.
const MaxArenaBytes = 1 << 30

// AppendTo appends object d to dst if the cache holds it, and returns the
// result with the object's header values.
func (c *Cache) AppendTo(dst []byte, d digest.SHA256) ([]byte, Headers, bool) {
	c.mu.RLock()
	it, ok := c.items[d]
	if ok {
		at := it.at % int64(len(c.arena))
		dst = append(dst, c.arena[at:at+int64(it.n)]...)
	}
	c.mu.RUnlock()
	if ok {
		c.hits.Add(1)
	}
	return dst, it.h, ok
}

// Get appends object d, of size bytes, to dst: from memory, or else as
// load appends it to dst (load may append nothing but must not change
// dst[:len(dst)]). Loaded bytes are kept and returned only if they are
// size bytes whose sha256 is d; otherwise Get returns a *digest.SizeError
// or a *digest.MismatchError (wrapped), so a damaged or tampered copy on
// disk is never served from here. Two Gets of one missing object may both
// load it: objects are small and local, and a flight group would cost
// every miss more than the rare duplicate read.
func (c *Cache) Get(dst []byte, d digest.SHA256, size int64, load func(dst []byte) ([]byte, error)) ([]byte, Headers, error) {
	if out, h, ok := c.AppendTo(dst, d); ok {
		return out, h, nil
	}
	out, err := load(dst)
	if err != nil {
		return dst, Headers{}, err
	}
	b := out[len(dst):]
	if int64(len(b)) != size {
		return dst, Headers{}, fmt.Errorf("object %s: %w", d, &digest.SizeError{Want: size, Got: int64(len(b))})
	}
	h, err := c.Put(d, b)
	if err != nil {
		return dst, Headers{}, err
	}
	return out, h, nil
}

// Put keeps b as object d if its sha256 is d and it fits, and returns its
// header values. If b's sha256 is not d, it returns a *digest.MismatchError
// (wrapped) and keeps nothing: the caller must not serve b.
func (c *Cache) Put(d digest.SHA256, b []byte) (Headers, error) {
	if got := digest.Sum(b); got != d {
		return Headers{}, fmt.Errorf("object %s: %w", d, &digest.MismatchError{Want: d, Got: got})
	}
	c.loads.Add(1)
	if c.arena == nil || len(b) > c.maxObj || len(b) > len(c.arena) {
		return headersOf(d, len(b)), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if it, ok := c.items[d]; ok {
		return it.h, nil // put meanwhile by another request
	}
	it := item{n: len(b), h: headersOf(d, len(b))}
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
			c.bytes -= int64(cur.n)
		}
	}
	c.order = append(c.order[drop:], ref{key: d, at: at})
	it.at = at
	copy(c.arena[at%size:], b)
	c.items[d] = it
	c.bytes += int64(len(b))
	c.head = end
	return it.h, nil
}

func headersOf(d digest.SHA256, n int) Headers {
	return Headers{ETag: []string{`"` + d.String() + `"`}, ContentLength: []string{strconv.Itoa(n)}}
}

// Stats returns the cache's counters now.
func (c *Cache) Stats() Stats {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return Stats{Hits: c.hits.Load(), Loads: c.loads.Load(), Objects: len(c.items), Bytes: c.bytes}
}
