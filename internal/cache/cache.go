// Package cache is the edge's disk cache of objects: a bounded LRU by bytes,
// pins against eviction while an object is served, one upstream fill per key
// shared by every concurrent reader, read-while-write streaming, verification
// before anything is kept or released complete, crash safety, and a restart
// that does not touch every file.
//
// On disk, under Config.Dir:
//
//	objects/ab/ab12…       an entry's bytes, exactly (0444), so *os.File serves
//	                       them with sendfile; the name is the key in hex
//	objects/ab/ab12….meta  the entry's Meta (JSON), renamed into place and
//	                       fsynced BEFORE the data file, so an entry is never
//	                       visible without its Meta
//	tmp/                   fills in flight; emptied by New (a crash's leftovers)
//	lock                   flock'ed by the open Cache (unix)
//	index                  journal of fixed 64-byte records: a snapshot of
//	                       every entry in LRU order, then appended add, del and
//	                       touch records, and a "clean" record at Close
//
// New reads only the index, whether the previous run closed cleanly or
// not. After a crash (no clean record at the end) a background reconcile
// then lists the 256 fan-out directories (names only, no per-file stat):
// entries whose file vanished are dropped, complete files the journal
// missed are adopted (after a process crash) or removed (after a power
// loss), a Meta without data is removed. A data file only ever appears
// under its final name after its bytes were written and verified.
//
// A fill is kept at once, without waiting for the disk; durability is made
// up by checkpoints that cover many fills with one barrier, and entries
// that no checkpoint covered are removed after a power loss or an OS
// crash (see "Commit and durability" in disk.go). So nothing partial or
// wrong is served after any crash, and a small fill costs no barrier.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// Key names a cache entry. In manifest mode it is the object's sha256; in
// plain mode it is sha256("url:"+path). Only its hex spelling reaches the file
// system, so no request path is ever joined into a file name.
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
	// ErrNotFound is returned by Get and UpdateMeta for a key without a complete entry.
	ErrNotFound = errors.New("cache: not found")
	// ErrClosed is returned after Close of the Cache, or by a Stream after its Close.
	ErrClosed = errors.New("cache: closed")
	// ErrStalled is the error of a fill whose upstream sent nothing for StallTimeout.
	ErrStalled = errors.New("cache: upstream stalled")
	// ErrContentAddressed is returned by UpdateMeta for a content-addressed
	// entry: it has no Meta besides its size and sha256, which never change.
	ErrContentAddressed = errors.New("cache: content-addressed entry")
	// ErrLocked is returned by New when another Cache (in this process or
	// another) has Dir open.
	ErrLocked = errors.New("cache: directory in use by another process")
	// ErrFellBehind is returned to a reader of a pass-through fill (nothing
	// kept, bytes held only in a memory window) that asks for bytes already
	// dropped from the window, or that read nothing for StallTimeout while
	// the others waited for it.
	ErrFellBehind = errors.New("cache: reader fell behind a pass-through fill")
)

// Config configures a Cache. Only Dir is required.
type Config struct {
	// Dir is the cache's directory; it is created if missing.
	Dir string
	// MaxBytes bounds the bytes of complete entries plus fills in flight.
	// If zero, 10 GiB.
	MaxBytes int64
	// Logger receives lifecycle and degradation events. If nil, nothing is logged.
	Logger *slog.Logger
	// Clock returns the time stamped into Meta.Stored. If nil, time.Now.
	Clock func() time.Time
	// StallTimeout fails a fill whose upstream sends nothing (headers or
	// bytes) for this long. If zero, 30s.
	StallTimeout time.Duration
	// HoldBack is how many final bytes of a fill with a known sha256 are
	// withheld from its readers until the whole object verified, so a
	// tampered object never reaches a client complete. If zero, 64 KiB (the
	// whole object if smaller).
	HoldBack int64
	// PassThroughBytes is the memory window of a fill that keeps nothing
	// (FillSpec.NoStore, Meta.NoStore, larger than MaxBytes, or the disk
	// failed, e.g. ENOSPC): bytes go to readers through this window only,
	// and the fill waits for its slowest reader. If zero, 1 MiB; it is
	// raised to at least 2*HoldBack+256 KiB. A fill of known size smaller
	// than the window takes only its size.
	PassThroughBytes int64
	// SyncInterval is how long a kept fill may stay not durable: a
	// checkpoint then makes every entry kept so far durable with one
	// barrier. After a power loss or OS crash the entries of at most this
	// long are removed (and fetched again); a process crash loses none. If
	// zero, 10s.
	SyncInterval time.Duration
	// BootID, if set, replaces the kernel's boot ID, which tells whether a
	// crash was only the process's (same boot: the page cache kept every
	// byte written) or the machine's; tests simulate a reboot with it. If
	// nil, the kernel's (Linux boot_id, FreeBSD kern.boottime).
	BootID func() [16]byte
	// Fault, if set, is called before each disk step of a fill ("create"
	// its temp file, "write" a chunk, "sync": prepare its commit, "meta":
	// write its Meta, "rename": its data into place), of a checkpoint
	// ("checkpoint": an error fails it, and its dirty entries are removed),
	// and "remove", between the unlinks of an evicted entry, where its
	// error is ignored. It may return an error to inject a failure (e.g.
	// syscall.ENOSPC) or kill the process. Production leaves it nil.
	Fault func(step string) error
}

const (
	defaultMaxBytes = 10 << 30
	defaultStall    = 30 * time.Second
	defaultHoldBack = 64 << 10
	defaultWindow   = 1 << 20
	defaultSync     = 10 * time.Second
	metaCacheLen    = 1 << 16
	chunkSize       = 256 << 10 // upstream read size
)

// Cache is the disk cache. It is safe for concurrent use.
type Cache struct {
	cfg      Config
	log      *slog.Logger
	clock    func() time.Time
	objDir   string
	tmpDir   string
	window   int64
	holdBack int64

	ctx    context.Context // lives until Close; fills derive from it
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup // fill goroutines, the reconcile
	lock   *os.File       // flock on Dir/lock; nil where unsupported
	fs     *os.File       // objects/, open: syncfs (Linux) goes through it
	// fsErrors counts the syncfs calls that reported an error. syncfs
	// reports a writeback error once, to whichever checkpoint syncs next,
	// so a fill whose temp file existed when the count moved may have lost
	// bytes to it: that fill is not kept.
	fsErrors atomic.Uint64
	ckMu     sync.Mutex     // serializes checkpoints
	ckWG     sync.WaitGroup // the armed checkpoint timer's run

	mu       sync.Mutex // guards everything below
	closed   bool
	idx      map[Key]int32
	ents     []entry
	free     []int32
	head     int32         // most recently used; -1 if empty
	tail     int32         // least recently used; -1 if empty
	used     int64         // bytes of complete entries
	reserved int64         // bytes reserved by fills in flight
	fills    map[Key]*fill // a kept fill stays here until committed
	jr       *journal
	metas    map[Key]Meta // decoded sidecars of recently read entries, up to metaCacheLen
	metaGen  uint64       // bumped by every Meta write or entry removal
	// Durability (see "Commit and durability" in disk.go).
	seq       uint64         // numbers dirty marks and tombstones
	dirty     []dirtyRef     // entries not yet durable, oldest first (stale refs skipped)
	tombs     map[Key]uint64 // clean entries removed since the last checkpoint
	dirtyDirs [256]bool      // fan-out directories with renames or unlinks not yet durable
	ckArmed   bool           // ckTimer will run a checkpoint
	ckTimer   *time.Timer
	boot      bootID // written in "open" records: the boot whose page cache holds our writes; zero until trustworthy
	rebooted  bool   // files not in the index may be torn: the reconcile removes them
	// reconciled is false while the index may disagree with the directory
	// (after a crash, until reconcile finished): no clean mark until then.
	reconciled    bool
	reconcileDone chan struct{} // closed when no reconcile runs

	st counters
}

// entry is a complete entry in the LRU list (an intrusive doubly-linked list
// over c.ents, so 1e6 entries cost two allocations, not 2e6).
type entry struct {
	key        Key
	size       int64
	prev, next int32 // toward head (newer) / tail (older); -1 at the ends
	pins       int32
	touched    bool // a touch record is in the journal since the last snapshot
	live       bool
	dirty      uint64 // non-zero: not durable yet (the seq of its mark in Cache.dirty)
	ca         bool   // content-addressed: no Meta sidecar (FillSpec.ContentAddressed)
}

func (e *entry) flags() byte {
	if e.ca {
		return flagCA
	}
	return 0
}

// dirtyRef names a dirty entry: slot, while ents[slot].dirty == seq.
type dirtyRef struct {
	slot int32
	seq  uint64
}

// New opens (or creates) the cache in cfg.Dir. It removes the temp files a
// crash left and reads the index; after a crash it also starts reconciling
// the index with the directory in the background (see reconcile).
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cache: no Dir")
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultMaxBytes
	}
	if cfg.StallTimeout <= 0 {
		cfg.StallTimeout = defaultStall
	}
	if cfg.HoldBack <= 0 {
		cfg.HoldBack = defaultHoldBack
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = defaultSync
	}
	if cfg.PassThroughBytes <= 0 {
		cfg.PassThroughBytes = defaultWindow
	}
	if min := 2*cfg.HoldBack + chunkSize; cfg.PassThroughBytes < min {
		cfg.PassThroughBytes = min
	}
	c := &Cache{
		cfg:      cfg,
		log:      cfg.Logger,
		clock:    cfg.Clock,
		objDir:   filepath.Join(cfg.Dir, "objects"),
		tmpDir:   filepath.Join(cfg.Dir, "tmp"),
		window:   cfg.PassThroughBytes,
		holdBack: cfg.HoldBack,
		head:     -1,
		tail:     -1,
		fills:    make(map[Key]*fill),
		metas:    make(map[Key]Meta),
		tombs:    make(map[Key]uint64),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = time.Now
	}
	start := time.Now()
	dirty, err := c.openDir()
	if err != nil {
		return nil, fmt.Errorf("open cache %s: %w", cfg.Dir, err)
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	c.reconcileDone = make(chan struct{})
	c.mu.Lock()
	c.evictLocked()
	c.reconciled = !dirty
	used := c.used
	if len(c.dirty) > 0 || len(c.tombs) > 0 || c.anyDirtyDirLocked() {
		c.scheduleCheckpointLocked()
	}
	c.mu.Unlock()
	c.log.Info("cache opened", "path", cfg.Dir, "bytes", used, "dur", time.Since(start))
	if dirty {
		c.log.Info("cache reconciling after unclean shutdown", "path", cfg.Dir)
		c.wg.Add(1)
		go c.reconcile(c.ctx)
	} else {
		close(c.reconcileDone)
	}
	return c, nil
}

// openDir locks the directory, prepares it and loads the index.
func (c *Cache) openDir() (dirty bool, err error) {
	if err := os.MkdirAll(c.cfg.Dir, 0o755); err != nil {
		return false, err
	}
	if c.lock, err = lockDir(c.cfg.Dir); err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, c.jr.close(), c.unlock())
		}
	}()
	if err := c.prepareDirs(); err != nil {
		return false, err
	}
	if c.fs, err = os.Open(c.objDir); err != nil {
		return false, err
	}
	return c.open()
}

// unlock releases the directory: its flock and the fd syncfs goes through.
func (c *Cache) unlock() error {
	var err error
	if c.fs != nil {
		err = c.fs.Close()
		c.fs = nil
	}
	if c.lock != nil {
		err = errors.Join(err, c.lock.Close())
		c.lock = nil
	}
	return err
}

// prepareDirs creates the directory tree and empties tmp/: whatever is there
// is a fill that a crash interrupted.
func (c *Cache) prepareDirs() error {
	if err := os.MkdirAll(c.objDir, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(c.tmpDir); err != nil {
		return err
	}
	if err := os.Mkdir(c.tmpDir, 0o755); err != nil {
		return err
	}
	for i := 0; i < 256; i++ {
		d := filepath.Join(c.objDir, fanout(byte(i)))
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// Close stops every fill in flight (their readers get ErrClosed), waits for
// them, and writes the index with a clean mark so the next New is fast.
// Objects and Streams of complete entries stay readable until their Close.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.stopCheckpointTimerLocked()
	c.mu.Unlock()
	c.cancel(ErrClosed)
	c.wg.Wait()
	c.ckWG.Wait()
	// Make every entry, and the evictions, durable before the index says
	// so, or a power cut could bring back files that the clean index no
	// longer lists (never served, but never reclaimed either).
	err := c.checkpoint()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		err = c.compactLocked(c.reconciled)
	}
	err = errors.Join(err, c.jr.close(), c.unlock())
	if err != nil {
		return fmt.Errorf("close cache: %w", err)
	}
	return nil
}

// Get returns the complete entry for key, pinned against eviction until the
// Object's Close, or ErrNotFound. A hit moves the entry to the front of the LRU.
func (c *Cache) Get(key Key) (*Object, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		i, ok := c.idx[key]
		if !ok {
			c.mu.Unlock()
			return nil, ErrNotFound
		}
		size, ca := c.pinLocked(i), c.ents[i].ca
		c.mu.Unlock()
		o, err := c.openEntry(key, i, size, ca)
		if err != nil {
			if c.dropBroken(key, i, err) {
				continue // gone; ErrNotFound on the next round
			}
			return nil, fmt.Errorf("get %s: %w", key, err)
		}
		c.st.hits.Add(1)
		return o, nil
	}
}

// pinLocked pins entry i, marks it used and returns its size.
func (c *Cache) pinLocked(i int32) int64 {
	e := &c.ents[i]
	e.pins++
	c.touchLocked(i)
	return e.size
}

// unpin releases a pin taken by pinLocked.
func (c *Cache) unpin(key Key, i int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if j, ok := c.idx[key]; ok && j == i && c.ents[i].pins > 0 {
		c.ents[i].pins--
		if c.ents[i].pins == 0 && !c.closed && c.used+c.reserved > c.cfg.MaxBytes {
			c.evictLocked()
		}
	}
}

// dropBroken handles an entry that could not be opened although it is
// indexed (removed by hand, a sidecar lost to a crash before its data was
// durable, a size that differs): it unpins and, if the caller held the only
// pin, removes the entry and reports true. Anything else (EMFILE) leaves the
// entry alone.
func (c *Cache) dropBroken(key Key, i int32, err error) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	j, ok := c.idx[key]
	if !ok || j != i {
		return true
	}
	e := &c.ents[i]
	e.pins--
	var corrupt *corruptError
	if !errors.Is(err, os.ErrNotExist) && !errors.As(err, &corrupt) {
		return false
	}
	if e.pins > 0 {
		return false
	}
	c.log.Warn("cache entry dropped", "sha256", key.String(), "err", err)
	c.removeLocked(i)
	return true
}

// corruptError reports an indexed entry whose files contradict the index.
type corruptError struct{ msg string }

func (e *corruptError) Error() string { return e.msg }

// openEntry opens entry key's files: the data, and unless the entry is
// content-addressed (ca), its Meta.
func (c *Cache) openEntry(key Key, i int32, size int64, ca bool) (*Object, error) {
	var m Meta
	if !ca {
		var err error
		if m, err = c.meta(key); err != nil {
			return nil, err
		}
	}
	f, err := openFile(c.dataPath(key), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && ca {
		m = Meta{Size: size, SHA256: digest.SHA256(key), Stored: fi.ModTime()}
	}
	if err == nil && (fi.Size() != size || m.Size != size) {
		err = &corruptError{fmt.Sprintf("size %d, meta %d, index %d", fi.Size(), m.Size, size)}
	}
	if err != nil {
		_ = f.Close() // the open/stat error is the one to report
		return nil, err
	}
	return &Object{c: c, f: f, key: key, slot: i, meta: m}, nil
}

// meta returns key's Meta from memory or from its sidecar. The sidecar is
// remembered unless a Meta write or a removal happened while it was read
// (so a stale Meta never outlives an UpdateMeta).
func (c *Cache) meta(key Key) (Meta, error) {
	c.mu.Lock()
	m, ok := c.metas[key]
	gen := c.metaGen
	c.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := readMeta(c.metaPath(key))
	if err != nil {
		return m, err
	}
	c.mu.Lock()
	if c.metaGen == gen {
		if len(c.metas) >= metaCacheLen {
			for k := range c.metas { // drop an arbitrary one
				delete(c.metas, k)
				break
			}
		}
		c.metas[key] = m
	}
	c.mu.Unlock()
	return m, nil
}

// forgetMetaLocked drops key's remembered Meta before its sidecar changes.
func (c *Cache) forgetMetaLocked(key Key) {
	c.metaGen++
	delete(c.metas, key)
}

// UpdateMeta atomically replaces the Meta of a complete entry (after a 304
// revalidation, say). Size and SHA256 are the entry's own and cannot change:
// m.Size is ignored, and a zero m.SHA256 keeps the stored one.
func (c *Cache) UpdateMeta(key Key, m Meta) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	i, ok := c.idx[key]
	if !ok {
		c.mu.Unlock()
		return ErrNotFound
	}
	if c.ents[i].ca {
		c.mu.Unlock()
		return fmt.Errorf("update meta %s: %w", key, ErrContentAddressed)
	}
	size := c.pinLocked(i) // pinned: eviction cannot unlink beneath the rename
	c.forgetMetaLocked(key)
	c.mu.Unlock()
	defer c.unpin(key, i)
	old, err := readMeta(c.metaPath(key))
	if err != nil {
		return fmt.Errorf("update meta %s: %w", key, err)
	}
	m.Size = size
	if m.SHA256.IsZero() {
		m.SHA256 = old.SHA256
	}
	if m.Stored.IsZero() {
		m.Stored = old.Stored
	}
	err = c.writeMeta(key, m)
	c.mu.Lock()
	c.forgetMetaLocked(key) // a Get during the write may have read the old one
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("update meta %s: %w", key, err)
	}
	return nil
}

// Remove deletes the complete entry for key, as an eviction does: for an
// entry found damaged (its bytes failed a check), so that the next Fill
// fetches it again. An entry still pinned by another reader stays (it is
// reported false); ErrNotFound if there is none.
func (c *Cache) Remove(key Key) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false, ErrClosed
	}
	i, ok := c.idx[key]
	if !ok {
		return false, ErrNotFound
	}
	if c.ents[i].pins > 0 {
		return false, nil
	}
	c.removeLocked(i)
	return true, nil
}

// Object is a complete entry, pinned against eviction until Close. Its
// methods are safe for concurrent use; Close must be called exactly once.
type Object struct {
	c      *Cache
	f      *os.File
	key    Key
	slot   int32
	meta   Meta
	closed atomic.Bool
}

// ReadAt implements io.ReaderAt over the object's bytes.
func (o *Object) ReadAt(p []byte, off int64) (int, error) {
	n, err := o.f.ReadAt(p, off)
	o.c.st.bytesCache.Add(int64(n))
	return n, err
}

// Size returns the object's length in bytes.
func (o *Object) Size() int64 { return o.meta.Size }

// Meta returns the object's Meta as of Get.
func (o *Object) Meta() Meta { return o.meta }

// File returns the open data file: exactly the object's bytes, so
// http.ServeContent(w, r, name, mod, o.File()) serves Range and HEAD with
// sendfile. Do not Close it (Object.Close does); reads through it bypass the
// BytesFromCache counter. Its offset is shared: use it from one goroutine.
func (o *Object) File() *os.File { return o.f }

// Close releases the file and the pin.
func (o *Object) Close() error {
	if o.closed.Swap(true) {
		return nil
	}
	err := o.f.Close()
	o.c.unpin(o.key, o.slot)
	return err
}

// Stats are the cache's counters since New (Entries, BytesUsed and
// FillsInFlight are current values).
type Stats struct {
	Hits              int64 // Get or Fill answered by a complete entry
	Misses            int64 // Fill calls that started an upstream fetch
	Collapsed         int64 // Fill calls that joined a fetch already in flight
	BytesFromCache    int64 // bytes read from complete entries (not via Object.File)
	BytesFromUpstream int64 // bytes received from upstreams
	FillsInFlight     int64
	FillErrors        int64 // fills that failed (upstream error, stall, verify)
	VerifyFailures    int64 // fills whose size or sha256 did not match
	PassThrough       int64 // fills that streamed without keeping (no-store, too big, disk error)
	DiskErrors        int64 // fills degraded to pass-through by a disk error (ENOSPC)
	Evictions         int64
	Entries           int64
	BytesUsed         int64 // bytes of entries plus reservations of fills in flight
	MaxBytes          int64
}

type counters struct {
	hits, misses, collapsed, bytesCache, bytesUpstream atomic.Int64
	inFlight, fillErrors, verifyFailures, passThrough  atomic.Int64
	diskErrors, evictions                              atomic.Int64
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	entries, used := int64(len(c.idx)), c.used+c.reserved
	c.mu.Unlock()
	return Stats{
		Hits:              c.st.hits.Load(),
		Misses:            c.st.misses.Load(),
		Collapsed:         c.st.collapsed.Load(),
		BytesFromCache:    c.st.bytesCache.Load(),
		BytesFromUpstream: c.st.bytesUpstream.Load(),
		FillsInFlight:     c.st.inFlight.Load(),
		FillErrors:        c.st.fillErrors.Load(),
		VerifyFailures:    c.st.verifyFailures.Load(),
		PassThrough:       c.st.passThrough.Load(),
		DiskErrors:        c.st.diskErrors.Load(),
		Evictions:         c.st.evictions.Load(),
		Entries:           entries,
		BytesUsed:         used,
		MaxBytes:          c.cfg.MaxBytes,
	}
}

// fault runs the Config.Fault hook.
func (c *Cache) fault(step string) error {
	if c.cfg.Fault == nil {
		return nil
	}
	return c.cfg.Fault(step)
}
