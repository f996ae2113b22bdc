// Package cache is the edge's disk cache of objects keyed by sha256: a
// bounded LRU by bytes, pins against eviction while an object is served, one
// upstream fill per key shared by every concurrent reader, read-while-write
// streaming, verification before anything is kept, crash safety and a fast
// restart.
package cache

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// Key names a cache entry. In manifest mode it is the object's sha256; in
// plain mode it is sha256("url:"+path). Only its hex spelling reaches the file
// system.
type Key [32]byte

// String returns the key as 64 lower-case hex digits.
func (k Key) String() string { return digest.SHA256(k).String() }

// Meta is what the cache stores beside an entry's bytes.
type Meta struct {
	Size         int64         // total bytes; -1 while unknown
	SHA256       digest.SHA256 // zero when unknown (plain mode)
	ContentType  string
	ETag         string    // upstream's validator (plain mode)
	LastModified time.Time // upstream's (plain mode)
	Stored       time.Time // when the fill completed (set by the cache)
	Generation   uint64    // plain mode: set-ID generation it was fetched/revalidated under
	Expires      time.Time // plain mode: RFC 9111 freshness without a set-ID URL
	NoStore      bool      // upstream forbade storing: the fill streams but keeps nothing
}

// Errors.
var (
	// ErrNotFound is returned by Get for a key without a complete entry.
	ErrNotFound = errors.New("cache: not found")
	// ErrClosed is returned after Close of the Cache (or of the Stream).
	ErrClosed = errors.New("cache: closed")
	// ErrStalled is the cause of a fill whose upstream sent nothing for StallTimeout.
	ErrStalled = errors.New("cache: upstream stalled")
)

// Config configures a Cache.
type Config struct {
	// Dir is the cache's directory; it is created if missing. Required.
	Dir string
	// MaxBytes bounds the bytes of entries plus fills in flight. If zero, 10 GiB.
	MaxBytes int64
	// Logger receives lifecycle events. If nil, nothing is logged.
	Logger *slog.Logger
	// Clock returns the time stamped into Meta.Stored. If nil, time.Now.
	Clock func() time.Time
	// StallTimeout fails a fill whose upstream sends nothing (headers or
	// bytes) for this long. If zero, 30s.
	StallTimeout time.Duration
	// HoldBack is how many final bytes of a fill with a known sha256 are
	// withheld from readers until the whole object verified. If zero, 64 KiB
	// (or the whole object if smaller).
	HoldBack int64
}

// Cache is the disk cache. It is safe for concurrent use.
type Cache struct{}

// New opens (or creates) the cache in cfg.Dir.
func New(cfg Config) (*Cache, error) { return nil, errors.New("cache: not implemented") }

// Close stops every fill in flight and persists the index.
func (c *Cache) Close() error { return nil }

// Get returns the complete entry for key, pinned until Object.Close, or ErrNotFound.
func (c *Cache) Get(key Key) (*Object, error) { return nil, ErrNotFound }

// UpdateMeta atomically replaces the Meta of a complete entry.
func (c *Cache) UpdateMeta(key Key, m Meta) error { return ErrNotFound }

// FillSpec describes how to fetch an object missing from the cache.
type FillSpec struct {
	Want    digest.SHA256 // zero: unknown (no verification)
	Size    int64         // -1: unknown
	Fetch   func(ctx context.Context) (body io.ReadCloser, meta Meta, err error)
	NoStore bool // pass-through: stream to readers, never keep
}

// Fill returns a Stream of key's bytes.
func (c *Cache) Fill(key Key, spec FillSpec) (*Stream, error) {
	return nil, errors.New("cache: not implemented")
}

// Object is a complete, pinned entry.
type Object struct{}

// ReadAt implements io.ReaderAt.
func (o *Object) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }

// Size returns the object's length in bytes.
func (o *Object) Size() int64 { return 0 }

// Meta returns the object's Meta.
func (o *Object) Meta() Meta { return Meta{} }

// File returns the open data file for http.ServeContent.
func (o *Object) File() *os.File { return nil }

// Close unpins the object.
func (o *Object) Close() error { return nil }

// Stream is one reader's view of a fill.
type Stream struct{}

// Meta waits for the upstream's headers.
func (s *Stream) Meta() (Meta, error) { return Meta{}, errors.New("cache: not implemented") }

// ReadAt implements io.ReaderAt.
func (s *Stream) ReadAt(p []byte, off int64) (int, error) { return 0, io.EOF }

// Close releases the stream.
func (s *Stream) Close() error { return nil }

// Stats are the cache's counters.
type Stats struct{}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats { return Stats{} }
