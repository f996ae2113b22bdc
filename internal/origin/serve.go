package origin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Cache-Control values (DESIGN.md, "URL space").
const (
	ccRevalidate = "public, no-cache"                    // set paths, manifests: content changes (see serveManifest)
	ccImmutable  = "public, max-age=31536000, immutable" // objects
	ccShort      = "public, max-age=5"                   // SETS
	ccMirrors    = "public, max-age=300"
)

// Response headers naming what was served.
const (
	hdrSet   = "X-Pkgcdn-Set"
	hdrSetID = "X-Pkgcdn-Set-Id"
	hdrGrace = "X-Pkgcdn-Grace"
)

// httpError is an error with the status (and for the publish API, the
// machine-readable code) it maps to.
type httpError struct {
	status  int
	code    string
	msg     string   // safe to show the client
	missing []string // code "missing_objects"
	err     error    // cause, logged; may be nil
}

func (e *httpError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.err }

var errNotFound = &httpError{status: http.StatusNotFound, code: "not_found", msg: "not found"}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	httpserve.DropUnservableRange(r)
	st := s.sets.Load()
	t, err := route.ParseURL(r.URL, st.isSet)
	if err != nil {
		if len(s.cfg.Mirrors) > 0 && st.isSet(strings.Trim(r.URL.Path, "/")) && r.URL.RawPath == "" {
			// pkg's mirror_type: http may ask the repository URL itself.
			t, err = route.Target{Kind: route.Root}, nil
		} else {
			s.fail(w, r, false, errNotFound)
			return
		}
	}
	if t.Kind == route.Publish {
		s.servePublish(w, r, t.Op)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.fail(w, r, false, &httpError{status: http.StatusMethodNotAllowed, msg: "method not allowed"})
		return
	}
	switch t.Kind {
	case route.SetFile:
		err = s.serveSetFile(w, r, st, t)
	case route.Sets:
		err = s.serveSets(w, r, st, false)
	case route.SetsSig:
		err = s.serveSets(w, r, st, true)
	case route.Manifest, route.ManifestSig:
		err = s.serveManifest(w, r, t)
	case route.Object:
		err = s.serveObject(w, r, t.Hash)
	case route.Root:
		err = s.serveMirrors(w, r)
	default: // route.Notify is the edge's
		err = errNotFound
	}
	if err != nil {
		s.fail(w, r, false, err)
	}
}

// fail maps err to a status, logs what an operator needs, and answers
// plain text (or JSON for the publish API). Clients never see paths.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, api bool, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
	case errors.Is(err, layout.ErrNotFound), errors.Is(err, fs.ErrNotExist), errors.Is(err, route.ErrNotFound):
		he = &httpError{status: http.StatusNotFound, code: "not_found", msg: "not found", err: err}
	default:
		he = &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error", err: err}
	}
	switch {
	case he.status >= 500:
		s.log.Error("request failed", "path", r.URL.Path, "status", he.status, "remote", r.RemoteAddr, "err", err)
	case api:
		s.log.Warn("publish refused", "path", r.URL.Path, "status", he.status, "remote", r.RemoteAddr, "err", err)
	default:
		s.log.Debug("request refused", "path", r.URL.Path, "status", he.status, "remote", r.RemoteAddr, "err", err)
	}
	h := w.Header()
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set("Cache-Control", "no-store")
	if api {
		msg := he.msg
		if he.status < 500 && he.err != nil {
			// Authenticated publishers get the cause (no paths in refusals).
			msg += ": " + he.err.Error()
		}
		writeJSON(w, he.status, apiErrorBody{Error: msg, Code: he.code, Missing: he.missing})
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(he.status)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, he.msg)
	}
}

// Constant header values, shared: Header.Set would allocate each one on
// every request. net/http only reads (or deletes) them.
var (
	hvRevalidate = []string{ccRevalidate}
	hvNosniff    = []string{"nosniff"}
	hvBytes      = []string{"bytes"}
)

// serveSetFile serves a file of the live set: `current` is read once, and
// everything after uses that ID, so a request never mixes two sets.
func (s *Server) serveSetFile(w http.ResponseWriter, r *http.Request, st *setsState, t route.Target) error {
	live, err := s.live.live(t.Set)
	if err != nil {
		return err
	}
	if s.onLive != nil {
		live = s.onLive(t.Set, live)
	}
	err = s.serveSetFileOf(w, r, st, t, live)
	if errors.Is(err, fs.ErrNotExist) {
		// Between reading `current` and opening the file, a publish may
		// have switched the set and GC collected the one read (with a GC
		// grace that short): if `current` names another set now, the
		// request is served from that one instead. Nothing was written
		// yet but headers, which are set again.
		if now, lerr := s.live.fresh(t.Set); lerr == nil && now != live {
			delete(w.Header(), hdrGrace)
			return s.serveSetFileOf(w, r, st, t, now)
		}
	}
	return err
}

// serveSetFileOf serves the file of t from the set whose live ID is live
// (or by grace from an older one). A file missing on disk is an error
// wrapping fs.ErrNotExist, and then nothing but headers was written.
func (s *Server) serveSetFileOf(w http.ResponseWriter, r *http.Request, st *setsState, t route.Target, live setid.ID) error {
	v, err := s.manifest(t.Set, live)
	if err != nil {
		return err
	}
	h := w.Header()
	h[hdrSet] = v.setHdr
	h[hdrSetID] = v.idHdr
	e, ok := v.Lookup(t.Path)
	if !ok && !s.cfg.NoGrace {
		var gv *setView
		if gv, e, ok = s.grace(st, t.Set, live, t.Path); ok {
			h[hdrSetID] = gv.idHdr
			h[hdrGrace] = v.idHdr
			v = gv
		}
	}
	if !ok {
		return errNotFound
	}
	if e.Size <= s.cfg.SmallFileBytes {
		return s.serveSmall(w, r, v, live, e)
	}
	f, err := openFile(v.filePath(e))
	if err != nil {
		return s.openError(v, live, e, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Size() != e.Size {
		return fmt.Errorf("set %s %s: %s: not a regular file of %d bytes as the manifest says", v.Set, v.ID, e.Path, e.Size)
	}
	h["Etag"] = []string{`"` + e.SHA256.String() + `"`}
	h["Cache-Control"] = hvRevalidate
	h["Content-Type"] = route.ContentTypeHeader(e.Path)
	h["X-Content-Type-Options"] = hvNosniff
	http.ServeContent(w, r, "", e.Modified.Time(), newSizedFile(f, fi.Size()))
	return nil
}

// openError maps the failure to open the file of entry e of v.
func (s *Server) openError(v *setView, live setid.ID, e manifest.Entry, err error) error {
	if v.ID == live && errors.Is(err, fs.ErrNotExist) {
		// The live manifest lists it: the root is damaged. A 500, not
		// a 404, so that pkg fails over to another mirror instead of
		// giving up on the package.
		return &httpError{status: http.StatusInternalServerError, code: "internal", msg: "internal error",
			err: fmt.Errorf("set %s %s: file of the manifest missing: %w", v.Set, live, err)}
	}
	return err
}

// serveSmall serves a file of at most SmallFileBytes from memory: its
// bytes come from the memory cache, or are read whole (no fstat: reading
// one byte more than the manifest's size shows a longer file) and checked
// against the manifest's sha256 before they are kept or served. A plain
// GET or HEAD, the common case, is answered by hand in one write (header
// values precomputed); anything with Range or a condition goes through
// http.ServeContent, which implements them.
func (s *Server) serveSmall(w http.ResponseWriter, r *http.Request, v *setView, live setid.ID, e manifest.Entry) error {
	bp := bodyBufs.Get().(*[]byte)
	defer bodyBufs.Put(bp)
	body, hv, err := s.objs.Get((*bp)[:0], e.SHA256, e.Size, func(dst []byte) ([]byte, error) {
		return readSmall(dst, v.filePath(e), e.Size)
	})
	*bp = body[:0] // keep what the buffer grew to
	if err != nil {
		var se *digest.SizeError
		var me *digest.MismatchError
		if errors.As(err, &se) || errors.As(err, &me) {
			// The root is damaged (or tampered with): a 500, logged by fail,
			// so that pkg fails over to another mirror.
			return fmt.Errorf("set %s %s: %s differs from the manifest: %w", v.Set, v.ID, e.Path, err)
		}
		return s.openError(v, live, e, err)
	}
	h := w.Header()
	h["Etag"] = hv.ETag
	h["Cache-Control"] = hvRevalidate
	h["Content-Type"] = route.ContentTypeHeader(e.Path)
	h["X-Content-Type-Options"] = hvNosniff
	if !plainRequest(r) {
		http.ServeContent(w, r, "", e.Modified.Time(), bytes.NewReader(body))
		return nil
	}
	// What http.ServeContent sends with a whole file.
	if lm := v.lastModified(e.Modified); lm != nil {
		h["Last-Modified"] = lm
	}
	h["Accept-Ranges"] = hvBytes
	h["Content-Length"] = hv.ContentLength
	if err := httpserve.WriteWhole(w, r, http.StatusOK, body); err != nil {
		panic(http.ErrAbortHandler) // the header is out: a broken connection, never a short 200
	}
	return nil
}

// plainRequest reports whether r is a GET or HEAD that http.ServeContent
// would answer with the whole file, whatever its ETag and Last-Modified:
// no Range, no condition.
func plainRequest(r *http.Request) bool {
	h := r.Header
	for _, k := range [...]string{"Range", "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
		if _, ok := h[k]; ok {
			return false
		}
	}
	return true
}

// readSmall appends the file at path, expected to hold size bytes, to
// dst: up to size+1 bytes, so that a longer file shows (no fstat needed).
func readSmall(dst []byte, path string, size int64) ([]byte, error) {
	f, err := openFile(path)
	if err != nil {
		return dst, err
	}
	defer f.Close()
	n0 := len(dst)
	dst = slices.Grow(dst, int(size)+1)
	n, err := io.ReadFull(f, dst[n0:n0+int(size)+1])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = nil
	}
	return dst[:n0+n], err
}

// bodyBufs holds the buffers small bodies are copied into to be sent.
var bodyBufs = sync.Pool{New: func() any { return new([]byte) }}

// serveSets serves SETS or its signature, and implements the long-poll.
func (s *Server) serveSets(w http.ResponseWriter, r *http.Request, st *setsState, sig bool) error {
	wait, waiting := r.URL.Query()["wait"]
	// Before the first publish there is no SETS: a long-poll waits for it.
	if waiting && !sig && (st.etag == "" || normETag(wait[0]) == st.etag) {
		var parked bool
		st, parked = s.longPoll(r, st)
		if r.Context().Err() != nil {
			return nil // the poller hung up
		}
		if st.etag == "" {
			if !parked {
				w.Header().Set("Retry-After", "5")
			}
			return errNotFound
		}
		if st.etag == normETag(wait[0]) {
			h := w.Header()
			h.Set("ETag", st.etag)
			h.Set("Cache-Control", ccShort)
			if !parked {
				h.Set("Retry-After", "5") // over MaxWaiters, or shutting down
			}
			w.WriteHeader(http.StatusNotModified)
			return nil
		}
	}
	if st.etag == "" {
		return errNotFound
	}
	data, etag := st.data, st.etag
	if sig {
		data, etag = st.sig, st.sigETag
	}
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", ccShort)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	http.ServeContent(w, r, "", st.mod, bytes.NewReader(data))
	return nil
}

// longPoll parks the request on st's change channel until SETS changes,
// the long-poll timeout passes, the client leaves or the server releases
// its waiters. It returns the snapshot to answer with, and whether the
// request was parked until a change or the timeout (false: the answer
// should tell the poller to come back later).
func (s *Server) longPoll(r *http.Request, st *setsState) (*setsState, bool) {
	select {
	case <-s.stop:
		return st, false
	default:
	}
	if n := s.waiters.Add(1); n > int64(s.cfg.MaxWaiters) {
		s.waiters.Add(-1)
		return st, false
	}
	s.met.waiters.Inc()
	defer func() {
		s.waiters.Add(-1)
		s.met.waiters.Dec()
	}()
	timer := time.NewTimer(s.cfg.LongPollTimeout)
	defer timer.Stop()
	if s.onWait != nil {
		s.onWait()
	}
	select {
	case <-st.changed:
	case <-timer.C:
	case <-r.Context().Done():
		return st, false
	case <-s.stop:
		return s.sets.Load(), false
	}
	return s.sets.Load(), true
}

// normETag accepts an ETag with or without quotes (and a weak prefix).
func normETag(v string) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "W/")
	return `"` + strings.Trim(v, `"`) + `"`
}

func (s *Server) serveManifest(w http.ResponseWriter, r *http.Request, t route.Target) error {
	data, sig, err := s.root.Manifest(t.Set, t.ID)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set(hdrSet, t.Set)
	h.Set(hdrSetID, t.ID.String())
	// Not immutable, unlike DESIGN.md's table: `pkgpublish refresh`
	// re-signs a live manifest under the same URL (a later expiry). A
	// cache in front keeps the body and revalidates it by its ETag.
	h["Cache-Control"] = hvRevalidate
	if t.Kind == route.ManifestSig {
		data = sig
		h.Set("Content-Type", "text/plain; charset=utf-8")
	} else {
		h.Set("Content-Type", "application/zstd")
	}
	h.Set("ETag", etagOf(data))
	// No Last-Modified: a refresh changes the bytes, not the set ID's time,
	// so If-Modified-Since could answer 304 for a stale copy.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	return nil
}

func (s *Server) serveObject(w http.ResponseWriter, r *http.Request, d digest.SHA256) error {
	f, err := openFile(s.root.ObjectPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return errNotFound
	}
	h := w.Header()
	h.Set("ETag", `"`+d.String()+`"`)
	h.Set("Cache-Control", ccImmutable)
	h.Set("Content-Type", "application/octet-stream")
	http.ServeContent(w, r, "", fi.ModTime(), newSizedFile(f, fi.Size()))
	return nil
}

// serveMirrors serves pkg's mirror list (mirror_type: http): one
// "URL: <mirror>" line per mirror, tried in order.
func (s *Server) serveMirrors(w http.ResponseWriter, r *http.Request) error {
	l := s.mirrors.Load()
	if l.body == nil {
		return errNotFound
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", ccMirrors)
	h.Set("ETag", l.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(l.body))
	return nil
}
