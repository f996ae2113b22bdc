package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// FillSpec describes how to fetch an object missing from the cache.
type FillSpec struct {
	// Want is the object's sha256; zero means unknown (no verification).
	Want digest.SHA256
	// Size is the object's length in bytes; -1 means unknown.
	Size int64
	// Fetch starts the upstream request. It runs in the fill's goroutine
	// under a context that derives from the Cache, not from any request;
	// it is canceled by Cache.Close, by a stall, or when a pass-through
	// fill has no reader left. meta.Size is the upstream's length (-1 if
	// unknown). The cache closes body, possibly from another goroutine
	// while a Read is blocked (to end a stalled one).
	Fetch func(ctx context.Context) (body io.ReadCloser, meta Meta, err error)
	// NoStore streams to the readers without keeping anything.
	NoStore bool
	// ContentAddressed says the key is Want, the sha256 of the bytes (the
	// key names the content, as an object URL does). The entry is then
	// kept without a Meta sidecar: its Meta is only Size, SHA256 and
	// Stored (the file's time); what else Fetch returned is not kept.
	// One file per entry is cheaper to commit, open and remove.
	ContentAddressed bool
}

var errNoReaders = errors.New("cache: pass-through fill has no reader left")

// fill is one upstream fetch of a key, shared by every Stream on it.
//
// Bytes go to a temp file in tmp/ that every reader reads with ReadAt, so a
// slow reader never slows the fill. If the fill keeps nothing (no-store, too
// big, or the disk failed mid-way), bytes from fileN on go to a memory ring
// of c.window bytes instead and the fill waits for its slowest reader.
type fill struct {
	c      *Cache
	key    Key
	spec   FillSpec
	cancel context.CancelCauseFunc

	// Owned by the fill goroutine.
	keep     bool   // bytes go to the temp file and will be committed
	reserved int64  // bytes counted in c.reserved (changed under c.mu)
	fsErrors uint64 // c.fsErrors when the temp file was created

	mu         sync.Mutex    // guards everything below
	changed    chan struct{} // closed and replaced whenever readers may progress
	writerWait chan struct{} // non-nil while the fill waits for a slow reader
	meta       Meta
	metaOK     bool
	holdBack   int64    // bytes withheld until verified
	written    int64    // bytes received from upstream
	limit      int64    // readers may read [0, limit)
	fileN      int64    // [0, fileN) is in file
	file       *os.File // temp file; nil if none
	ring       []byte   // pass-through window for offsets >= fileN; nil if none
	complete   bool     // every byte received and verified; limit == written
	err        error    // the fill failed: every ReadAt returns it
	canceled   bool     // canceled for lack of readers
	refs       int      // open streams + the fill goroutine; file is closed at 0
	readers    map[*Stream]struct{}
}

// Fill returns a Stream of key's bytes: over the complete entry if there is
// one (a hit), else over the fill in flight for key (collapsed), else over a
// new fill that fetches with spec. The lookup of entry and flight happens
// under one lock, so two callers never start two fetches of one key. spec
// matters only to the caller that starts the fetch. The caller must Close
// the Stream; that never cancels the fill for the others.
func (c *Cache) Fill(key Key, spec FillSpec) (*Stream, error) {
	if spec.Fetch == nil {
		return nil, errors.New("cache: fill without Fetch")
	}
	if spec.ContentAddressed && spec.Want != digest.SHA256(key) {
		return nil, fmt.Errorf("cache: content-addressed fill of %s wants %s", key, spec.Want)
	}
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		if f := c.fills[key]; f != nil {
			if s := f.join(); s != nil {
				c.mu.Unlock()
				c.st.collapsed.Add(1)
				s.collapsed = true
				return s, nil
			}
			// A failing fill, or a pass-through that dropped its first
			// bytes: start afresh. The old one never commits.
		}
		if i, ok := c.idx[key]; ok {
			size, ca := c.pinLocked(i), c.ents[i].ca
			c.mu.Unlock()
			o, err := c.openEntry(key, i, size, ca)
			if err != nil {
				if c.dropBroken(key, i, err) {
					continue
				}
				return nil, fmt.Errorf("fill %s: %w", key, err)
			}
			c.st.hits.Add(1)
			return &Stream{obj: o, done: make(chan struct{})}, nil
		}
		ctx, cancel := context.WithCancelCause(c.ctx)
		f := &fill{
			c:       c,
			key:     key,
			spec:    spec,
			cancel:  cancel,
			changed: make(chan struct{}),
			refs:    1,
			readers: make(map[*Stream]struct{}),
		}
		s := f.join()
		c.fills[key] = f
		c.st.misses.Add(1)
		c.st.inFlight.Add(1)
		c.wg.Add(1)
		c.mu.Unlock()
		go f.run(ctx)
		return s, nil
	}
}

// join adds a reader, or returns nil if the fill cannot serve a new reader
// from offset 0.
func (f *fill) join() *Stream {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil || f.canceled || f.ring != nil && f.written-f.fileN > int64(len(f.ring)) {
		return nil
	}
	// A reader of a fill whose bytes are all here and verified (committing
	// in the background) fetches nothing: a hit, not a collapsed request.
	s := &Stream{f: f, done: make(chan struct{}), complete: f.complete}
	f.readers[s] = struct{}{}
	f.refs++
	return s
}

// run is the fill's goroutine. Its count in c.wg is released by finish,
// or, for a fill to keep, by the committer once the fill is retired.
func (f *fill) run(ctx context.Context) {
	f.finish(f.fetch(ctx))
}

// fetch copies the upstream body to the readers (and the temp file) and
// verifies it.
func (f *fill) fetch(ctx context.Context) error {
	c := f.c
	stall := c.cfg.StallTimeout
	timer := time.AfterFunc(stall, func() { f.cancel(ErrStalled) })
	defer timer.Stop()
	body, meta, err := f.spec.Fetch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return fmt.Errorf("fill %s: %w", f.key, err)
	}
	if body == nil {
		return fmt.Errorf("fill %s: Fetch returned no body", f.key)
	}
	closeBody := sync.OnceFunc(func() { _ = body.Close() }) // nothing to report: the bytes are all read or the fill failed
	stop := context.AfterFunc(ctx, closeBody)               // unblocks a Read of a stalled body
	defer func() { stop(); closeBody() }()

	size := f.spec.Size
	if size < 0 {
		size = max(meta.Size, -1)
	} else if meta.Size >= 0 && meta.Size != size {
		return fmt.Errorf("fill %s: %w", f.key, &digest.SizeError{Want: size, Got: meta.Size})
	}
	meta.Size = size
	if !f.spec.Want.IsZero() {
		meta.SHA256 = f.spec.Want
	}
	meta.Stored = time.Time{}
	var hb int64
	switch {
	case !f.spec.Want.IsZero():
		hb = c.holdBack
		if size >= 0 {
			hb = min(hb, size)
		}
	case size > 0:
		hb = 1 // a body longer than Size is caught before its last byte is out
	}
	f.mu.Lock()
	f.meta, f.metaOK, f.holdBack = meta, true, hb
	f.broadcastLocked()
	f.mu.Unlock()

	switch {
	case f.spec.NoStore || meta.NoStore:
		f.toPassThrough()
	case size > c.cfg.MaxBytes || size >= 0 && !c.reserve(f, size):
		f.toPassThrough()
	default:
		if err := f.createTemp(); err != nil {
			c.st.diskErrors.Add(1)
			c.log.Warn("cache disk error, passing through", "sha256", f.key.String(), "err", err)
			f.toPassThrough()
		}
	}

	var h hash.Hash
	if !f.spec.Want.IsZero() {
		h = digest.New()
	}
	pool := &bufPool
	if size >= 0 && size < smallChunk {
		pool = &smallBufPool
	}
	bp := pool.Get().(*[]byte)
	defer pool.Put(bp)
	buf := *bp
	// An object held back whole (hb == size) reaches its readers only once
	// verified: gather it in buf and write it once, not chunk by chunk.
	// buf stays at least a byte longer than size, so a Read can still
	// report the end, or a byte too many.
	gather := size >= 0 && hb >= size && size < int64(len(buf))
	var got, pending int64
	for {
		n, rerr := body.Read(buf[pending:])
		if n > 0 {
			timer.Reset(stall)
			if size >= 0 && got+int64(n) > size {
				return fmt.Errorf("fill %s: %w", f.key, &digest.SizeError{Want: size, Got: got + int64(n)})
			}
			chunk := buf[pending : pending+int64(n)]
			if h != nil {
				h.Write(chunk)
			}
			got += int64(n)
			c.st.bytesUpstream.Add(int64(n))
			if gather {
				pending += int64(n)
			} else if err := f.write(ctx, chunk, size < 0, timer); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			if pending > 0 {
				if err := f.write(ctx, buf[:pending], false, timer); err != nil {
					return err
				}
			}
			break
		}
		if rerr != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("fill %s: read upstream: %w", f.key, rerr)
		}
	}
	if size >= 0 && got != size {
		return fmt.Errorf("fill %s: %w", f.key, &digest.SizeError{Want: size, Got: got})
	}
	if h != nil {
		if sum := digest.FromHash(h); sum != f.spec.Want {
			return fmt.Errorf("fill %s: %w", f.key, &digest.MismatchError{Want: f.spec.Want, Got: sum})
		}
	}
	return nil
}

// Upstream read buffers: chunkSize, or smallChunk for an object known to
// fit (every fill in flight holds one: 32 small fills would hold 8 MiB of
// chunkSize buffers, which the garbage collector's pacing then multiplies
// in RSS).
var (
	bufPool      = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}
	smallBufPool = sync.Pool{New: func() any { b := make([]byte, smallChunk); return &b }}
)

// smallChunk is the read buffer of a fill smaller than it (64 KiB
// objects included, with room to see their end).
const smallChunk = 65 << 10

// tempSeq makes temp file names unique within a process; New empties
// tmp/, so no other process's names are there.
var tempSeq atomic.Uint64

func (f *fill) createTemp() error {
	if err := f.c.fault("create"); err != nil {
		return err
	}
	f.fsErrors = f.c.fsErrors.Load()
	// Created read-only (0444, as committed objects are): no chmod at
	// commit. The descriptor is writable all the same.
	name := filepath.Join(f.c.tmpDir, f.key.String()+"."+strconv.FormatUint(tempSeq.Add(1), 10))
	file, err := openFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.file = file
	f.mu.Unlock()
	f.keep = true
	return nil
}

// reserve counts n more bytes of f toward MaxBytes, evicting as needed. It
// refuses (false) if f alone would exceed MaxBytes.
func (c *Cache) reserve(f *fill, n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.reserved+n > c.cfg.MaxBytes {
		return false
	}
	f.reserved += n
	c.reserved += n
	c.evictLocked()
	return true
}

// unreserve returns f's reservation.
func (c *Cache) unreserve(f *fill) {
	c.mu.Lock()
	c.reserved -= f.reserved
	f.reserved = 0
	c.mu.Unlock()
}

// toPassThrough makes f keep nothing: bytes from here on go through the
// memory ring. Bytes already in the temp file stay readable there.
func (f *fill) toPassThrough() {
	f.c.st.passThrough.Add(1)
	f.keep = false
	f.c.unreserve(f)
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.c.window
	if size := f.meta.Size; size >= 0 {
		n = min(n, max(size-f.fileN, 1)) // the whole rest fits: never waits
	}
	f.ring = make([]byte, n)
	if len(f.readers) == 0 {
		f.canceled = true
		f.cancel(errNoReaders)
	}
}

// write hands b to the readers: appended to the temp file, or, in
// pass-through, copied into the ring once the slowest reader made room.
func (f *fill) write(ctx context.Context, b []byte, grow bool, timer *time.Timer) error {
	c := f.c
	if f.keep {
		err := c.fault("write")
		if err == nil {
			_, err = f.file.WriteAt(b, f.fileN) // fileN changes only here
		}
		if err != nil {
			c.st.diskErrors.Add(1)
			c.log.Warn("cache disk error, passing through", "sha256", f.key.String(), "err", err)
			f.toPassThrough()
		} else {
			f.mu.Lock()
			f.written += int64(len(b))
			f.fileN = f.written
			f.advanceLocked()
			f.mu.Unlock()
			if grow && !c.reserve(f, int64(len(b))) {
				f.toPassThrough() // an unknown size that outgrew the cache
			}
			return nil
		}
	}
	w := int64(len(f.ring))
	for len(b) > 0 {
		f.mu.Lock()
		space := w - (f.written - f.minPosLocked())
		if space <= 0 {
			ch := make(chan struct{})
			f.writerWait = ch
			f.mu.Unlock()
			timer.Stop() // a slow reader is not an upstream stall...
			lag := time.NewTimer(c.cfg.StallTimeout)
			select {
			case <-ch:
			case <-ctx.Done():
				lag.Stop()
				return context.Cause(ctx)
			case <-lag.C:
				// ...but one that takes nothing for StallTimeout is cut
				// loose (ErrFellBehind) rather than stall everyone.
				if err := f.dropLaggards(); err != nil {
					return err
				}
			}
			lag.Stop()
			timer.Reset(c.cfg.StallTimeout)
			continue
		}
		k := min(space, int64(len(b)))
		at := (f.written - f.fileN) % w
		m := copy(f.ring[at:], b[:k])
		copy(f.ring, b[m:k])
		f.written += k
		f.advanceLocked()
		f.mu.Unlock()
		b = b[k:]
	}
	return nil
}

// dropLaggards removes the readers holding the ring's window from the
// fill; their reads return ErrFellBehind. With no reader left, the fill ends.
func (f *fill) dropLaggards() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.minPosLocked()
	for s := range f.readers {
		if max(s.pos, f.fileN) == m {
			s.fellBehind = true
			delete(f.readers, s)
		}
	}
	f.broadcastLocked() // the dropped ones learn it now
	if len(f.readers) == 0 {
		f.canceled = true
		return errNoReaders
	}
	return nil
}

// minPosLocked is the lowest offset a reader of the ring may still need.
func (f *fill) minPosLocked() int64 {
	m := f.written
	for s := range f.readers {
		m = min(m, max(s.pos, f.fileN))
	}
	return m
}

func (f *fill) setLimitLocked() {
	if f.complete {
		f.limit = f.written
	} else {
		f.limit = max(0, f.written-f.holdBack)
	}
}

// advanceLocked recomputes limit after bytes arrived and wakes the
// readers only if it moved: while a small object is held back whole, its
// chunks wake nobody (they could read nothing more).
func (f *fill) advanceLocked() {
	old := f.limit
	f.setLimitLocked()
	if f.limit != old {
		f.broadcastLocked()
	}
}

func (f *fill) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fill) wakeWriterLocked() {
	if f.writerWait != nil {
		close(f.writerWait)
		f.writerWait = nil
	}
}

// finish publishes the outcome to the readers and either queues a verified
// fill to keep for the committer or retires the fill at once.
func (f *fill) finish(err error) {
	c := f.c
	f.mu.Lock()
	if err == nil {
		f.complete = true
		f.meta.Stored = c.clock()
		if f.meta.Size < 0 {
			f.meta.Size = f.written
		}
	} else {
		f.err = err
	}
	f.setLimitLocked()
	f.broadcastLocked()
	meta, file := f.meta, f.file
	f.mu.Unlock()

	// Verified bytes are released to the readers now; the commit only
	// decides whether they are kept (see "Commit and durability" in disk.go).
	if err == nil && f.keep {
		cerr := c.commit(f, file, meta)
		if cerr != nil {
			c.st.diskErrors.Add(1)
			c.log.Warn("cache commit", "sha256", f.key.String(), "err", cerr)
		}
		f.end(nil, cerr == nil)
		c.wg.Done()
		return
	}
	c.mu.Lock()
	f.retireLocked(false, false)
	c.mu.Unlock()
	f.end(err, false)
	c.wg.Done()
}

// retireLocked takes f out of c.fills and returns its reservation; if
// committed, its bytes become the entry for f.key. Else, if placed, a
// commit failed midway and what it put under objects/ is removed: no entry
// may be left half in place. No other fill of this key can commit
// meanwhile (f was still the key's only flight). c.mu is held.
func (f *fill) retireLocked(committed, placed bool) {
	c := f.c
	if c.fills[f.key] == f {
		delete(c.fills, f.key)
	}
	c.reserved -= f.reserved
	f.reserved = 0
	switch {
	case committed:
		f.mu.Lock()
		size := f.written
		f.mu.Unlock()
		i := c.insertLocked(f.key, size)
		c.ents[i].ca = f.spec.ContentAddressed
		c.journalAddLocked(i)
		c.markDirtyLocked(i)
	case placed:
		if rerr := errors.Join(removeIfExists(c.dataPath(f.key)), removeIfExists(c.metaPath(f.key))); rerr != nil {
			c.log.Warn("cache remove", "sha256", f.key.String(), "err", rerr)
		}
		c.dirtyDirs[f.key[0]] = true
	}
}

// end counts the outcome of a retired fill and drops the fill goroutine's
// reference; the temp file goes unless committed.
func (f *fill) end(err error, committed bool) {
	c := f.c
	f.mu.Lock()
	file := f.file
	f.mu.Unlock()
	if file != nil && !committed {
		_ = os.Remove(file.Name()) // best effort: New empties tmp/
	}
	c.st.inFlight.Add(-1)
	if err != nil {
		c.st.fillErrors.Add(1)
		var me *digest.MismatchError
		var se *digest.SizeError
		if errors.As(err, &me) || errors.As(err, &se) {
			c.st.verifyFailures.Add(1)
		}
	}
	f.cancel(nil)
	f.unref()
}

func (f *fill) unref() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	file := f.file
	f.mu.Unlock()
	if last && file != nil {
		_ = file.Close() // read-only use remains; a close error changes nothing
	}
}

// Stream is one reader's view of a fill, or of a complete entry (a hit).
// ReadAt and Meta may block while bytes arrive; they return ErrClosed once
// Close was called. A fill that keeps nothing (pass-through) waits for its
// slowest reader, so Close a Stream as soon as you stop reading it. A Stream
// is safe for concurrent use; Close it once (more calls do nothing).
type Stream struct {
	f   *fill   // nil for a hit
	obj *Object // non-nil for a hit
	pos int64   // lowest offset still needed (pass-through); guarded by f.mu
	// fellBehind: dropped from a pass-through fill for not reading; guarded by f.mu
	fellBehind bool
	collapsed  bool // joined a fill another caller started; set before it is returned
	complete   bool // the fill was complete and verified when joined
	done       chan struct{}
	once       sync.Once
}

// Hit reports whether the Stream reads complete, verified bytes: an entry,
// or a fill that had received and verified every byte when this Stream
// joined it (still committing). No upstream fetch happens for it.
func (s *Stream) Hit() bool { return s.obj != nil || s.complete }

// Collapsed reports whether the Stream joined a fill in progress that
// another caller had started (RFC 9211's "collapsed"): its bytes come from
// that one fetch.
func (s *Stream) Collapsed() bool { return s.collapsed && !s.complete }

// Meta waits for the upstream's headers and returns the Meta (Size -1 if
// the upstream did not say; Stored is zero until the fill completes). It
// returns the fill's error if it failed before its headers arrived.
func (s *Stream) Meta() (Meta, error) {
	if s.obj != nil {
		return s.obj.Meta(), nil
	}
	f := s.f
	for {
		f.mu.Lock()
		if f.metaOK {
			m := f.meta
			f.mu.Unlock()
			return m, nil
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return Meta{}, err
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
			return Meta{}, ErrClosed
		}
	}
}

// ReadAt implements io.ReaderAt: it blocks until len(p) bytes at off have
// arrived (and, for a verified object, until the held-back tail verified),
// or the object ends (io.EOF with the rest), or the fill fails (its error,
// for every reader, even for bytes already received: the caller must abort
// the response). For a read that returns whatever arrived, use Reader.
func (s *Stream) ReadAt(p []byte, off int64) (int, error) {
	return s.readAt(p, off, false)
}

// Reader returns an io.Reader of the stream from off whose Read returns as
// soon as any bytes past its position are available: for io.Copy to a
// client, so the client sees bytes as they arrive.
func (s *Stream) Reader(off int64) io.Reader { return &streamReader{s: s, off: off} }

type streamReader struct {
	s   *Stream
	off int64
}

func (r *streamReader) Read(p []byte) (int, error) {
	n, err := r.s.readAt(p, r.off, true)
	r.off += int64(n)
	return n, err
}

func (s *Stream) readAt(p []byte, off int64, partial bool) (int, error) {
	if s.obj != nil {
		select {
		case <-s.done:
			return 0, ErrClosed
		default:
		}
		return s.obj.ReadAt(p, off)
	}
	if off < 0 {
		return 0, errors.New("cache: negative offset")
	}
	if len(p) == 0 {
		return 0, nil
	}
	f := s.f
	copied := int64(-1) // ring bytes [.., copied) are already in p
	for {
		f.mu.Lock()
		select {
		case <-s.done:
			f.mu.Unlock()
			return 0, ErrClosed
		default:
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return 0, err
		}
		if s.fellBehind {
			f.mu.Unlock()
			return 0, ErrFellBehind
		}
		end, eof := off+int64(len(p)), false
		if f.complete && end >= f.written {
			end, eof = f.written, true
			if off >= end {
				f.mu.Unlock()
				return 0, io.EOF
			}
		}
		ready := end <= f.limit || partial && off < f.limit
		if ready && end > f.limit {
			end, eof = f.limit, false
		}
		if f.ring != nil { // pass-through: bytes from fileN on live in the ring
			copied = max(copied, off, f.fileN)
			if s.pos != copied {
				// This reader needs nothing below copied: a Range from
				// far ahead must not hold the window at its old position,
				// or writer and reader would wait for each other.
				s.pos = copied
				f.wakeWriterLocked()
			}
			// A strict ReadAt copies what arrived as it arrives: the
			// writer may only reuse ring bytes that every reader has taken.
			if to := min(end, f.limit); copied < to {
				w := int64(len(f.ring))
				if copied < f.written-w {
					f.mu.Unlock()
					return 0, ErrFellBehind
				}
				at := (copied - f.fileN) % w
				m := copy(p[copied-off:to-off], f.ring[at:])
				copy(p[copied-off+int64(m):to-off], f.ring)
				copied = to
				s.pos = to
				f.wakeWriterLocked()
			}
		}
		if ready {
			fileEnd := min(end, f.fileN)
			s.pos = end
			f.wakeWriterLocked()
			file := f.file
			f.mu.Unlock()
			if off < fileEnd {
				// [off, fileEnd) is below fileN: written and never rewritten,
				// and the file stays open while this stream holds its ref.
				if _, err := file.ReadAt(p[:fileEnd-off], off); err != nil {
					return 0, fmt.Errorf("cache: read temp file: %w", err)
				}
			}
			n := int(end - off)
			if eof {
				return n, io.EOF
			}
			return n, nil
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-s.done:
			return 0, ErrClosed
		}
	}
}

// Close releases the stream. It never cancels a fill that is being kept;
// a pass-through fill (nothing kept) stops when its last reader leaves.
func (s *Stream) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		if s.obj != nil {
			err = s.obj.Close()
			return
		}
		f := s.f
		f.mu.Lock()
		delete(f.readers, s)
		f.wakeWriterLocked()
		if f.ring != nil && len(f.readers) == 0 && !f.complete && f.err == nil {
			f.canceled = true
			f.cancel(errNoReaders)
		}
		f.mu.Unlock()
		f.unref()
	})
	return err
}
