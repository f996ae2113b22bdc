package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// Response headers naming what was served (the master's).
const (
	hdrSet   = "X-Pkgcdn-Set"
	hdrSetID = "X-Pkgcdn-Set-Id"
	hdrGrace = "X-Pkgcdn-Grace"
)

// Cache-Status values (RFC 9211).
const (
	csHit         = "pkgcdn; hit"
	csMiss        = "pkgcdn; fwd=miss"
	csCollapsed   = "pkgcdn; fwd=miss; collapsed" // joined another request's fill: one fetch for both
	csRevalidated = "pkgcdn; fwd=stale; fwd-status=304"
	csReplaced    = "pkgcdn; fwd=stale; fwd-status=200"
	csStale       = "pkgcdn; hit; detail=stale-if-error"
	csUncacheable = "pkgcdn; fwd=uri-miss"
	csNegative    = "pkgcdn; hit; detail=negative" // a remembered upstream 404 (plain mode)
	csManifest    = "pkgcdn; hit; detail=manifest" // a HEAD answered from the manifest alone
)

func (e *Edge) serveManifestMode(w http.ResponseWriter, r *http.Request) error {
	snap := e.snap.Load() // once: the whole request is answered from one set
	t, err := route.ParseURL(r.URL, snap.isKnown)
	if err != nil {
		if snap.setsData == nil && snap.upstream == nil && !strings.HasPrefix(r.URL.Path, route.Prefix) {
			// No verified SETS yet (first start, upstream unreachable): we
			// cannot say a path is not in its set. 404 would stop pkg's
			// failover to the next mirror; 503 does not.
			return errNoSets
		}
		return err
	}
	if t.Kind == route.Notify {
		return e.serveNotify(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	switch t.Kind {
	case route.SetFile:
		st := snap.sets[t.Set]
		if st == nil {
			// Named by the verified SETS, but its manifest did not verify
			// (yet): unavailable, not absent.
			return fmt.Errorf("set %s: %w", t.Set, errNoManifest)
		}
		ent, id, ok := st.lookup(t.Path)
		if !ok {
			return fmt.Errorf("%w: %s not in set %s", route.ErrNotFound, t.Path, t.Set)
		}
		h := w.Header()
		if id == st.live.ID && st.live.Set == t.Set {
			h[hdrSet], h[hdrSetID] = st.nameHdr, st.idHdr // shared, never modified
		} else {
			h.Set(hdrSet, t.Set)
			h.Set(hdrSetID, id.String())
		}
		if id != st.live.ID {
			h.Set(hdrGrace, st.live.ID.String()) // as the master: served from an older set
		}
		return e.serveObject(w, r, object{hash: ent.SHA256, size: ent.Size, modified: ent.Modified.Time(),
			ctype: route.ContentType(t.Path), cc: ccSetFile, inSet: true})
	case route.Object:
		return e.serveObject(w, r, object{hash: t.Hash, size: -1, ctype: "application/octet-stream", cc: ccImmutable})
	case route.Sets, route.SetsSig:
		return e.serveSets(w, r, snap, t.Kind == route.SetsSig)
	case route.Manifest, route.ManifestSig:
		return e.serveManifest(w, r, snap, t.Set, t.ID, t.Kind == route.ManifestSig)
	}
	return fmt.Errorf("%w: not served by an edge", route.ErrNotFound)
}

// object is one object to serve by hash.
type object struct {
	hash     digest.SHA256
	size     int64 // -1 if unknown (a bare object URL)
	modified time.Time
	ctype    string
	cc       string
	inSet    bool // named by a verified manifest: an upstream 404 is its fault, not ours
}

// serveObject answers from the cache, or fills the cache from the upstream's
// immutable object URL and streams the bytes as they arrive.
func (e *Edge) serveObject(w http.ResponseWriter, r *http.Request, o object) error {
	h := w.Header()
	// Header values from shared slices where they repeat (no allocation
	// per request); net/http copies the header when it writes it, and
	// nothing here appends to a value.
	h["Content-Type"] = headerValue(o.ctype)
	h["Cache-Control"] = headerValue(o.cc)
	h["Accept-Ranges"] = hdrBytes
	if r.Header["If-None-Match"] != nil || r.Header["If-Modified-Since"] != nil {
		if etag := etagOf(o.hash); notModified(r, etag, o.modified) {
			h["Etag"] = []string{etag}
			writeNotModified(w, o.modified)
			return nil
		}
	}
	key := cache.Key(o.hash)
	if e.mem != nil && o.size >= 0 && o.size <= memObjectMax {
		bp := getBuf(o.size)
		body, hv, ok := e.mem.AppendTo((*bp)[:0], o.hash)
		if ok {
			h["Etag"], h["Content-Length"] = hv.ETag, hv.ContentLength
			e.serveSmallHit(w, r, o, bp, body)
			return nil
		}
		putBuf(bp, nil)
	}
	h["Etag"] = []string{etagOf(o.hash)}
	if obj, err := e.cfg.Cache.Get(key); err == nil {
		if e.mem == nil || obj.Size() > memObjectMax {
			defer obj.Close()
			h.Set("Cache-Status", csHit)
			e.met.hit.Inc()
			serveCached(w, r, obj, o.modified, e.met.bytesCache)
			return nil
		}
		// Small: read it whole, check it, keep it in memory, send it in
		// one write.
		bp := getBuf(obj.Size())
		body, err := e.loadSmall(obj, o.hash, (*bp)[:0])
		if err == nil {
			e.serveSmallHit(w, r, o, bp, body)
			return nil
		}
		putBuf(bp, nil)
		// The disk copy failed its check (and is removed): fetch it again.
		e.log.Warn("cached object damaged, fetching again", "sha256", o.hash.String(), "err", err)
	}
	if r.Method == http.MethodHead && o.size >= 0 {
		// Everything a HEAD needs is in the manifest: no upstream round trip.
		h.Set("Cache-Status", csManifest)
		http.ServeContent(w, r, "", o.modified, &streamSeeker{size: o.size})
		return nil
	}
	if !o.inSet && e.negative(r.URL.Path, 0) {
		// A bare object URL the upstream recently did not have: asking
		// again for every such request would let anyone hammer it.
		h.Set("Cache-Status", csNegative)
		return fmt.Errorf("%w: object %s (cached 404)", route.ErrNotFound, o.hash)
	}
	s, err := e.cfg.Cache.Fill(key, cache.FillSpec{Want: o.hash, Size: o.size, Fetch: e.fetchObject(o), ContentAddressed: true})
	if err != nil {
		return fmt.Errorf("fill %s: %w", o.hash, err)
	}
	defer s.Close()
	m, err := s.Meta()
	if err != nil {
		var se *StatusError
		if !o.inSet {
			if errors.As(err, &se) && !errors.Is(err, ErrUpstreamDown) && se.Status == http.StatusNotFound {
				e.setNegative(r.URL.Path, 0)
			}
			return err // a 404 for a bare object URL is the truth
		}
		if errors.As(err, &se) {
			// The upstream lacks an object its own manifest names: its
			// fault, never a 404 that would stop the client's failover.
			return fmt.Errorf("%w: %w", ErrUpstreamDown, err)
		}
		return err
	}
	size := o.size
	if size < 0 {
		size = m.Size
	}
	status, ctr := csMiss, e.met.bytesUpstream
	switch {
	case s.Hit(): // committed between our Get and Fill
		status, ctr = csHit, e.met.bytesCache
		e.met.hit.Inc()
	case s.Collapsed():
		status = csCollapsed
		e.met.miss.Inc()
	default:
		e.met.miss.Inc()
	}
	if size >= 0 && size <= wholeMax && r.Method == http.MethodGet && !partial(r) {
		// Small: all of it is held back until verified anyway, so wait
		// for it and send header and body in one write. A fill that fails
		// meanwhile is then an error status, not a broken connection.
		bp := getBuf(size)
		body, err := e.readWhole(s, o.hash, (*bp)[:size])
		if err != nil {
			putBuf(bp, nil)
			return fmt.Errorf("fill %s: %w", o.hash, err)
		}
		h.Set("Cache-Status", status)
		serveBytes(w, r, body, o.modified, ctr)
		putBuf(bp, body)
		return nil
	}
	h.Set("Cache-Status", status)
	e.serveStream(w, r, s, size, o.modified, ctr)
	return nil
}

// Small objects.
const (
	// memObjectMax is the largest object kept in Edge.mem.
	memObjectMax = 16 << 10
	// wholeMax is the largest object of a fill in progress that is sent
	// whole, in one write, once verified (rather than streamed): no more
	// than the cache's default hold-back, which withholds all of it until
	// then anyway, nor than httpserve.WriteWhole sends in one write.
	wholeMax = min(64<<10, httpserve.MaxWholeBytes)
)

// Header values ready for a header map.
var (
	hdrHit   = []string{csHit}
	hdrBytes = []string{"bytes"}
)

// headerValues holds a []string for each header value seen (content
// types, Cache-Control values: a handful), so that setting one allocates
// nothing.
var headerValues sync.Map // string -> []string

func headerValue(v string) []string {
	if s, ok := headerValues.Load(v); ok {
		return s.([]string)
	}
	s, _ := headerValues.LoadOrStore(v, []string{v})
	return s.([]string)
}

// Buffers for small bodies: memObjectMax bytes for objects of Edge.mem,
// wholeMax for small fills. Two sizes, because every request in flight
// holds one, and the heap they add is paid several times over in RSS
// (GOGC=400).
var (
	memBufs   = sync.Pool{New: func() any { b := make([]byte, memObjectMax); return &b }}
	wholeBufs = sync.Pool{New: func() any { b := make([]byte, wholeMax); return &b }}
)

// serveSmallHit answers a cache hit on o whose whole body, checked, is in
// the buffer bp (from memory or read from disk), and gives bp back.
func (e *Edge) serveSmallHit(w http.ResponseWriter, r *http.Request, o object, bp *[]byte, body []byte) {
	w.Header()["Cache-Status"] = hdrHit
	e.met.hit.Inc()
	serveBytes(w, r, body, o.modified, e.met.bytesCache)
	putBuf(bp, body)
}

// getBuf returns a buffer of at least n bytes (n <= wholeMax).
func getBuf(n int64) *[]byte {
	if n <= memObjectMax {
		return memBufs.Get().(*[]byte)
	}
	return wholeBufs.Get().(*[]byte)
}

// putBuf returns bp to its pool unless body (what was made of it) grew
// out of it.
func putBuf(bp *[]byte, body []byte) {
	switch {
	case cap(body) > cap(*bp):
	case cap(*bp) == memObjectMax:
		memBufs.Put(bp)
	case cap(*bp) == wholeMax:
		wholeBufs.Put(bp)
	}
}

// partial reports whether r asks for part of a body or sets a precondition
// that http.ServeContent evaluates: such requests do not take the
// one-write paths.
func partial(r *http.Request) bool {
	h := r.Header
	return h["Range"] != nil || h["If-Range"] != nil || h["If-Match"] != nil || h["If-Unmodified-Since"] != nil
}

// loadSmall reads a small complete entry into dst, closes it, checks it
// against hash and keeps it in e.mem. A copy that fails the check is
// removed from the disk cache (the next Fill fetches it again) and an
// error returned: it is never served.
func (e *Edge) loadSmall(obj *cache.Object, hash digest.SHA256, dst []byte) ([]byte, error) {
	size := obj.Size()
	b := dst[:size]
	n, err := obj.ReadAt(b, 0)
	_ = obj.Close() // read-only; its error changes nothing here
	if err == io.EOF && int64(n) == size {
		err = nil
	}
	if err == nil {
		_, err = e.mem.Put(hash, b) // a *digest.MismatchError for a damaged copy
	}
	if err != nil {
		if _, rerr := e.cfg.Cache.Remove(cache.Key(hash)); rerr != nil && !errors.Is(rerr, cache.ErrNotFound) {
			err = errors.Join(err, rerr)
		}
		return nil, err
	}
	return b, nil
}

// readWhole waits for all len(b) bytes of a fill and reads them into b; a
// small one is kept in e.mem too. A fill's bytes were verified as they
// arrived (the last ones are held back until then), but a hit's come from
// the disk cache, and may be a copy loadSmall just found damaged but could
// not remove (another reader had it open): those are checked here, and a
// mismatch is an error, never served.
func (e *Edge) readWhole(s *cache.Stream, hash digest.SHA256, b []byte) ([]byte, error) {
	n, err := s.ReadAt(b, 0)
	if err == io.EOF && n == len(b) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	switch {
	case e.mem != nil && len(b) <= memObjectMax:
		if _, err := e.mem.Put(hash, b); err != nil {
			return nil, err
		}
	case s.Hit():
		if got := digest.Sum(b); got != hash {
			return nil, &digest.MismatchError{Want: hash, Got: got}
		}
	}
	return b, nil
}

// serveBytes answers with a whole object from memory: header and body in
// one write (httpserve.WriteWhole), or through http.ServeContent for
// Range requests and preconditions.
func serveBytes(w http.ResponseWriter, r *http.Request, body []byte, modified time.Time, c counter) {
	if partial(r) {
		cw := &countingWriter{ResponseWriter: w}
		http.ServeContent(cw, r, "", modified, bytes.NewReader(body))
		c.Add(float64(cw.n))
		return
	}
	if !modified.IsZero() {
		w.Header()["Last-Modified"] = []string{modified.UTC().Format(http.TimeFormat)}
	}
	if err := httpserve.WriteWhole(w, r, http.StatusOK, body); err != nil {
		panic(http.ErrAbortHandler) // the client left or the write failed mid-response
	}
	if r.Method != http.MethodHead {
		c.Add(float64(len(body)))
	}
}

// fetchObject returns the cache's upstream fetch of an object: its
// immutable URL, failing over on 404 too (a lagging upstream may not have
// it yet while another does).
func (e *Edge) fetchObject(o object) func(ctx context.Context) (io.ReadCloser, cache.Meta, error) {
	return func(ctx context.Context) (io.ReadCloser, cache.Meta, error) {
		e.met.upstreamFetches.Inc()
		resp, err := e.pool.do(ctx, request{
			url: func(b *url.URL) string { return route.ObjectURL(b, o.hash) },
			ok:  func(s int) bool { return s == http.StatusOK },
		})
		if err != nil {
			return nil, cache.Meta{}, err
		}
		size := o.size
		if size < 0 {
			size = resp.ContentLength
		}
		return resp.Body, cache.Meta{Size: size, SHA256: o.hash, ContentType: o.ctype, LastModified: o.modified}, nil
	}
}

func (e *Edge) serveSets(w http.ResponseWriter, r *http.Request, snap *snapshot, sig bool) error {
	if wait := r.URL.Query().Get("wait"); wait != "" && !sig && snap.etag != "" {
		next, busy := e.waitSets(r, snap, strings.Trim(strings.TrimPrefix(wait, "W/"), `"`))
		if next == nil {
			// Unchanged: as the master, 304; with Retry-After when refused
			// at once (too many waiters, shutting down).
			h := w.Header()
			h.Set("ETag", e.snap.Load().etag)
			h.Set("Cache-Control", ccSets)
			if busy {
				h.Set("Retry-After", "5")
			}
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
		snap = next
	}
	if snap.setsData == nil {
		return fmt.Errorf("%w: %w", route.ErrNotFound, errNoSets)
	}
	data := snap.setsData
	if sig {
		data = snap.setsSig
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", ccSets)
	if !sig {
		h.Set("ETag", snap.etag)
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	return nil
}

// waitSets holds a long-poll until the served SETS differs from etag, the
// client leaves, shutdown starts or LongPollTimeout passes. It returns the
// snapshot to answer with, or nil if unchanged (busy: refused at once).
func (e *Edge) waitSets(r *http.Request, snap *snapshot, etag string) (_ *snapshot, busy bool) {
	if strings.Trim(snap.etag, `"`) != etag {
		return snap, false
	}
	select {
	case <-e.stop:
		return nil, true
	default:
	}
	if n := e.waiters.Add(1); n > int64(e.cfg.MaxWaiters) {
		e.waiters.Add(-1)
		return nil, true
	}
	defer e.waiters.Add(-1)
	t := time.NewTimer(e.cfg.LongPollTimeout)
	defer t.Stop()
	for strings.Trim(snap.etag, `"`) == etag {
		select {
		case <-snap.changed:
			snap = e.snap.Load()
		case <-r.Context().Done():
			return nil, false
		case <-e.stop:
			return nil, true
		case <-t.C:
			return nil, false
		}
	}
	return snap, false
}

// serveManifest serves a held manifest from memory; one we do not hold is
// passed through from the upstream (the downstream verifies it anyway).
func (e *Edge) serveManifest(w http.ResponseWriter, r *http.Request, snap *snapshot, set string, id setid.ID, sig bool) error {
	h := w.Header()
	h.Set("Cache-Control", ccSetFile) // not immutable: a refresh re-signs a manifest under its URL
	if st, ok := snap.sets[set]; ok && st.live.ID == id {
		data, etag := st.liveBytes, st.liveETag
		if sig {
			data, etag = st.liveSig, st.sigETag
		}
		h.Set("ETag", etag)
		h.Set("Content-Type", "application/octet-stream")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
		return nil
	}
	resp, err := e.pool.do(r.Context(), request{url: func(b *url.URL) string { return route.ManifestURL(b, set, id, sig) }})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &StatusError{URL: resp.Request.URL.String(), Status: resp.StatusCode}
	}
	h.Set("Content-Type", "application/octet-stream")
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	if et := resp.Header.Get("ETag"); et != "" {
		h.Set("ETag", et)
	}
	h.Set("Cache-Status", csUncacheable)
	if r.Method == http.MethodHead {
		return nil
	}
	if _, err := io.Copy(w, io.LimitReader(resp.Body, maxManifestBytes)); err != nil {
		panic(http.ErrAbortHandler) // headers are out: break the connection, never a short 200
	}
	return nil
}

// notModified reports whether a conditional GET/HEAD can be answered 304
// from what we know locally (RFC 9110 13.2.2: If-None-Match wins over
// If-Modified-Since).
func notModified(r *http.Request, etag string, modified time.Time) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for _, t := range strings.Split(inm, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == etag {
				return true
			}
		}
		return false
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || modified.IsZero() {
		return false
	}
	t, err := http.ParseTime(ims)
	return err == nil && !modified.Truncate(time.Second).After(t)
}

func writeNotModified(w http.ResponseWriter, modified time.Time) {
	h := w.Header()
	h.Del("Content-Type")
	h.Del("Content-Length")
	if !modified.IsZero() {
		h.Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusNotModified)
}

// counter is the metric a response's bytes are added to.
type counter interface{ Add(float64) }

// serveCached serves a complete cache entry: Range, HEAD and conditionals
// by http.ServeContent, sendfile through the *os.File.
func serveCached(w http.ResponseWriter, r *http.Request, obj *cache.Object, modified time.Time, c counter) {
	cw := &countingWriter{ResponseWriter: w}
	defer func() { c.Add(float64(cw.n)) }()
	// Each Get opens its own file, so its offset is this request's alone.
	http.ServeContent(cw, r, "", modified, obj.File())
}

// serveStream serves a fill in progress. Headers go out at once; each chunk
// is flushed to the client as soon as it arrived from upstream. A fill that
// fails after the headers went out breaks the connection.
func (e *Edge) serveStream(w http.ResponseWriter, r *http.Request, s *cache.Stream, size int64, modified time.Time, c counter) {
	cw := &countingWriter{ResponseWriter: w, flush: true}
	defer func() { c.Add(float64(cw.n)) }()
	if size < 0 {
		// Unknown length (a chunked upstream): no Range, just the bytes.
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		if !modified.IsZero() {
			w.Header().Set("Last-Modified", modified.UTC().Format(http.TimeFormat))
		}
		w.Header().Del("Accept-Ranges")
		w.WriteHeader(http.StatusOK)
		ss := &streamSeeker{s: s, size: -1}
		if _, err := io.Copy(cw, ss); err != nil || ss.failed() != nil {
			e.abort(r, errors.Join(err, ss.failed()), cw.n)
		}
		return
	}
	ss := &streamSeeker{s: s, size: size}
	http.ServeContent(cw, r, "", modified, ss)
	if err := ss.failed(); err != nil {
		e.abort(r, err, cw.n)
	}
}

// abort breaks the connection of a response whose fill failed after the
// headers went out: the client sees a broken transfer, never a short 200.
func (e *Edge) abort(r *http.Request, err error, sent int64) {
	if errors.Is(err, cache.ErrClosed) && r.Context().Err() != nil {
		panic(http.ErrAbortHandler) // the client left: nothing to report
	}
	e.log.Warn("response aborted", "path", r.URL.Path, "bytes", sent, "err", err)
	panic(http.ErrAbortHandler)
}

// streamSeeker is an io.ReadSeeker over a cache.Stream of known size, for
// http.ServeContent: a Read waits until bytes at the offset have arrived.
// With a nil stream it only answers the size (HEAD).
type streamSeeker struct {
	s    *cache.Stream
	size int64
	off  int64

	mu  sync.Mutex // guards err (ServeContent reads multipart ranges on a goroutine)
	err error
}

func (ss *streamSeeker) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += ss.off
	case io.SeekEnd:
		offset += ss.size
	}
	if offset < 0 {
		return 0, errors.New("seek before start")
	}
	ss.off = offset
	return offset, nil
}

func (ss *streamSeeker) Read(p []byte) (int, error) {
	if ss.size >= 0 {
		if ss.off >= ss.size {
			return 0, io.EOF
		}
		p = p[:min(int64(len(p)), ss.size-ss.off)]
	}
	if ss.s == nil {
		return 0, errors.New("no stream")
	}
	// Reader returns as soon as any bytes are there: the client sees them
	// while the rest is still arriving.
	n, err := ss.s.Reader(ss.off).Read(p)
	ss.off += int64(n)
	if err == io.EOF && (ss.size < 0 || ss.off == ss.size) {
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		ss.mu.Lock()
		ss.err = err
		ss.mu.Unlock()
		if n > 0 {
			return n, nil // hand out what arrived; the error comes with the next read
		}
	}
	return n, err
}

func (ss *streamSeeker) failed() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.err
}

// countingWriter counts the body bytes written, and with flush set pushes
// each write to the client at once (a fill in progress). It keeps
// io.ReaderFrom so that cached files still go out by sendfile.
type countingWriter struct {
	http.ResponseWriter
	n     int64
	flush bool
}

// WriteHeader sends the headers of a fill in progress at once: the client
// learns the response started (and its length) before the first bytes,
// which may be held back until verified, arrive.
func (cw *countingWriter) WriteHeader(code int) {
	cw.ResponseWriter.WriteHeader(code)
	if cw.flush {
		_ = http.NewResponseController(cw.ResponseWriter).Flush() // a failed flush shows up at the next write
	}
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.ResponseWriter.Write(p)
	cw.n += int64(n)
	if cw.flush && err == nil {
		err = http.NewResponseController(cw.ResponseWriter).Flush()
	}
	return n, err
}

func (cw *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if cw.flush {
		return io.CopyBuffer(writerOnly{cw}, r, make([]byte, streamChunk))
	}
	n, err := io.Copy(cw.ResponseWriter, r)
	cw.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (cw *countingWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

type writerOnly struct{ io.Writer }

// streamChunk is the copy buffer of a response streamed from a fill in
// progress: each chunk is one write and one flush to the client.
const streamChunk = 128 << 10
