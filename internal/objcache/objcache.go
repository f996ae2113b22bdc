// Package objcache keeps small immutable objects in memory, keyed by their
// sha256: a cache bounded in bytes, least recently used out first
// (approximately: second chance), whose
// every entry was checked against its digest and size when it was loaded.
// pkgcdn's objects are content-addressed, so an entry never goes stale: a
// set switch, a GC or a republish changes which objects are asked for,
// never what the bytes of one are.
//
// It is for serving small files without touching the disk (open, read,
// close) on every request; the caller decides how an object is read.
package objcache

import (
	"container/list"
	"fmt"
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

// entryOverhead is what an entry costs besides its bytes (map slot, list
// element, Object, header strings), counted against MaxBytes so that many
// tiny objects cannot exceed the bound.
const entryOverhead = 256

// Config configures a Cache.
type Config struct {
	// MaxBytes bounds the memory the cache holds: the objects' bytes plus
	// a fixed overhead per entry. Objects being served after their
	// eviction are held until their responses end. If zero, 64 MiB; if
	// negative, nothing is kept (Get loads and verifies every time).
	MaxBytes int64
	// MaxObjectBytes is the largest object kept; bigger ones are loaded
	// and verified but not kept. If zero, 64 KiB.
	MaxObjectBytes int64
}

// Object is one verified object. It is shared by every caller that gets
// it: nothing in it may be modified.
type Object struct {
	// Data is the object's bytes.
	Data []byte
	// SHA256 is their digest.
	SHA256 digest.SHA256
	// ETag is {`"<sha256 hex>"`}, ready for a header map.
	ETag []string
	// ContentLength is {len(Data) in decimal}, ready for a header map.
	ContentLength []string
}

// Stats are a Cache's counters.
type Stats struct {
	Hits, Misses int64 // lookups served from memory; objects loaded and verified
	Objects      int   // objects held now
	Bytes        int64 // memory held now, as counted against MaxBytes
}

// Cache is a bounded cache of verified objects. It is safe for concurrent
// use.
//
// A hit takes no lock: the index is a sync.Map, and a hit only sets the
// entry's referenced bit (and counts). Eviction is second chance (CLOCK),
// the usual approximation of least recently used: the oldest entry goes
// unless it was used since it was last looked at, in which case it is
// moved to the front with its bit cleared.
type Cache struct {
	max, maxObj int64

	index sync.Map // digest.SHA256 → *entry; changed only under mu
	hits  atomic.Int64

	mu     sync.Mutex // guards order, bytes, misses and changes to index
	order  *list.List // of *entry, newest (or given a second chance) first
	bytes  int64
	misses int64
}

type entry struct {
	obj  *Object
	ref  atomic.Bool // used since eviction last looked at it
	elem *list.Element
}

// New returns an empty Cache.
func New(cfg Config) *Cache {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = DefaultMaxObjectBytes
	}
	return &Cache{max: cfg.MaxBytes, maxObj: cfg.MaxObjectBytes, order: list.New()}
}

// Lookup returns the object d if the cache holds it.
func (c *Cache) Lookup(d digest.SHA256) (*Object, bool) {
	v, ok := c.index.Load(d)
	if !ok {
		return nil, false
	}
	e := v.(*entry)
	if !e.ref.Load() { // a load is cheaper than a store to a shared line
		e.ref.Store(true)
	}
	c.hits.Add(1)
	return e.obj, true
}

// Get returns the object d of size bytes: from memory, or else from load,
// which returns its bytes (and may keep none of them: the cache owns the
// slice afterwards). Loaded bytes are kept only if they are size bytes
// whose sha256 is d; otherwise Get returns a *digest.SizeError or a
// *digest.MismatchError (wrapped) and keeps nothing, so a damaged or
// tampered copy on disk is never served from here. Two Gets of one
// missing object may both load it: objects are small and local, and a
// flight group would cost every miss more than the rare duplicate read.
func (c *Cache) Get(d digest.SHA256, size int64, load func() ([]byte, error)) (*Object, error) {
	if o, ok := c.Lookup(d); ok {
		return o, nil
	}
	data, err := load()
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, fmt.Errorf("object %s: %w", d, &digest.SizeError{Want: size, Got: int64(len(data))})
	}
	if got := digest.Sum(data); got != d {
		return nil, fmt.Errorf("object %s: %w", d, &digest.MismatchError{Want: d, Got: got})
	}
	o := &Object{Data: data, SHA256: d, ETag: []string{`"` + d.String() + `"`},
		ContentLength: []string{strconv.FormatInt(size, 10)}}
	c.add(o)
	return o, nil
}

func cost(o *Object) int64 { return int64(len(o.Data)) + entryOverhead }

// add keeps o (unless it is too big, or the cache is off) and evicts
// beyond MaxBytes.
func (c *Cache) add(o *Object) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.misses++
	if c.max < 0 || int64(len(o.Data)) > c.maxObj || cost(o) > c.max {
		return
	}
	if _, ok := c.index.Load(o.SHA256); ok {
		return // loaded meanwhile by another Get: keep that one
	}
	e := &entry{obj: o}
	e.elem = c.order.PushFront(e)
	c.index.Store(o.SHA256, e)
	c.bytes += cost(o)
	for c.bytes > c.max {
		old := c.order.Back().Value.(*entry)
		if old.ref.Load() && old != e {
			old.ref.Store(false)
			c.order.MoveToFront(old.elem)
			continue
		}
		c.order.Remove(old.elem)
		c.index.Delete(old.obj.SHA256)
		c.bytes -= cost(old.obj)
	}
}

// Stats returns the cache's counters now.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses, Objects: c.order.Len(), Bytes: c.bytes}
}
