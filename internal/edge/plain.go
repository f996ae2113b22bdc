package edge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/route"
)

// plainState is plain mode's memory of the set-ID URL, persisted so that a
// restart neither forgets the generation (and serves stale files as fresh
// after more changes) nor needlessly revalidates everything.
type plainState struct {
	etag, lastModified string        // validators of the set-ID URL
	sum                digest.SHA256 // of its body
}

const plainStateFile = "plain-generation"

// maxSetIDBytes bounds the body of a set-ID URL.
const maxSetIDBytes = 1 << 20

func (e *Edge) loadPlainState() error {
	e.gen.Store(1)
	if err := e.loadVersions(); err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(e.cfg.StateDir, plainStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load plain state: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return nil // unreadable: start over; entries of other generations revalidate
	}
	gen, err1 := strconv.ParseUint(f[0], 10, 64)
	sum, err2 := digest.Parse(f[1])
	if err1 != nil || err2 != nil || gen == 0 {
		return nil
	}
	e.gen.Store(gen)
	e.setID.sum = sum
	return nil
}

// pollSetID fetches the set-ID URL with a conditional GET; a changed body
// starts a new generation: every entry of an older one is revalidated on
// its next hit.
func (e *Edge) pollSetID(ctx context.Context) error {
	hdr := http.Header{}
	if e.setID.etag != "" {
		hdr.Set("If-None-Match", e.setID.etag)
	}
	if e.setID.lastModified != "" {
		hdr.Set("If-Modified-Since", e.setID.lastModified)
	}
	u := func(b *url.URL) string { return e.cfg.SetIDURL }
	if strings.HasPrefix(e.cfg.SetIDURL, "/") {
		u = func(b *url.URL) string {
			v := *b
			v.Path = strings.TrimRight(v.Path, "/") + e.cfg.SetIDURL
			v.RawPath = ""
			return v.String()
		}
	}
	resp, err := e.pool.do(ctx, request{url: u, header: hdr})
	if err != nil {
		return fmt.Errorf("poll set-ID URL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified {
		return nil
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("poll set-ID URL: %w", &StatusError{URL: resp.Request.URL.String(), Status: resp.StatusCode})
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxSetIDBytes))
	if err != nil {
		return fmt.Errorf("poll set-ID URL: %w", err)
	}
	e.setID.etag, e.setID.lastModified = resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	sum := digest.Sum(body)
	if sum == e.setID.sum {
		return nil
	}
	gen := e.gen.Load() + 1
	state := fmt.Sprintf("%d %s\n", gen, sum)
	if err := atomicfile.WriteFile(filepath.Join(e.cfg.StateDir, plainStateFile), []byte(state), 0o644); err != nil {
		return fmt.Errorf("persist generation: %w", err)
	}
	e.setID.sum = sum
	e.gen.Store(gen)
	// The set-ID file's first line, for the operator: plain mode has no
	// verified ID, only a changed file.
	first := strings.TrimSpace(string(bytes.SplitN(body, []byte("\n"), 2)[0]))
	e.log.Info("set switched", "set_id", first[:min(len(first), 80)], "upstream", resp.Request.URL.String())
	return nil
}

// plainKey is the cache key of a path in plain mode: sha256("url:"+path)
// for its first version, and with "#<n>" appended for the n-th replacement.
//
// The cache cannot replace a complete entry in place (a Fill of a present
// key returns the entry), so a path whose revalidation brings new bytes
// moves to a new key; the superseded entry is never fresh again (it was
// stale when superseded) and ages out of the LRU.
func plainKey(p string, version uint64) cache.Key {
	if version == 0 {
		return cache.Key(digest.Sum([]byte("url:" + p)))
	}
	return cache.Key(digest.Sum([]byte("url:" + p + "#" + strconv.FormatUint(version, 10))))
}

// version returns the current key version of path.
func (e *Edge) version(p string) uint64 {
	e.versMu.Lock()
	defer e.versMu.Unlock()
	return e.vers[p]
}

// nextVersion moves path past version seen to a key with no entry, unless a
// concurrent replacement already did: it returns the version to fill.
func (e *Edge) nextVersion(p string, seen uint64) uint64 {
	e.versMu.Lock()
	defer e.versMu.Unlock()
	if v := e.vers[p]; v != seen {
		return v // replaced meanwhile: join that fill
	}
	v := seen + 1
	// After a restart the versions start again at 0: skip the keys still
	// holding superseded entries.
	for ; ; v++ {
		o, err := e.cfg.Cache.Get(plainKey(p, v))
		if err != nil {
			break
		}
		_ = o.Close() // only probing
	}
	if e.vers == nil {
		e.vers = map[string]uint64{}
	}
	e.vers[p] = v
	e.versDirty = true // saved by saveVersionsLoop: a set change may replace thousands
	return v
}

// saveVersionsLoop persists the key versions every few seconds while they
// change, and once more when ctx ends. What a crash loses only costs a
// revalidation and a probe after the restart.
func (e *Edge) saveVersionsLoop(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.saveVersions()
			return
		case <-t.C:
			e.saveVersions()
		}
	}
}

const plainVersionsFile = "plain-versions"

// saveVersions persists the key versions ("<version> <path>" lines), if
// they changed, so that a restart finds the newest entry of a replaced path
// at once.
func (e *Edge) saveVersions() {
	e.versMu.Lock()
	if !e.versDirty {
		e.versMu.Unlock()
		return
	}
	var b strings.Builder
	for p, v := range e.vers {
		fmt.Fprintf(&b, "%d %s\n", v, p)
	}
	e.versDirty = false
	e.versMu.Unlock()
	if err := atomicfile.WriteFile(filepath.Join(e.cfg.StateDir, plainVersionsFile), []byte(b.String()), 0o644); err != nil {
		e.log.Warn("persist plain-mode key versions", "err", err)
		e.versMu.Lock()
		e.versDirty = true
		e.versMu.Unlock()
	}
}

// loadVersions reads what saveVersions wrote; a bad line is skipped
// (its path starts again at version 0, which only costs a revalidation).
func (e *Edge) loadVersions() error {
	b, err := os.ReadFile(filepath.Join(e.cfg.StateDir, plainVersionsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load plain-mode key versions: %w", err)
	}
	e.vers = map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		vs, p, ok := strings.Cut(line, " ")
		v, err := strconv.ParseUint(vs, 10, 64)
		if !ok || err != nil || !strings.HasPrefix(p, "/") {
			continue
		}
		e.vers[p] = v
	}
	return nil
}

// cleanPlainPath validates a request path for plain mode: collapsed leading
// slashes, then the same rules as a set file (no "..", no control bytes).
func cleanPlainPath(p string) (string, error) {
	if len(p) > route.MaxPathLen || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: bad path", route.ErrNotFound)
	}
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		return "/", nil
	}
	if strings.HasPrefix(rel, relpath.Reserved+"/") {
		// pkgcdn's own files of a master upstream: validate the rest.
		if err := relpath.Validate(strings.TrimPrefix(rel, relpath.Reserved+"/")); err != nil {
			return "", fmt.Errorf("%w: %v", route.ErrNotFound, err)
		}
		return "/" + rel, nil
	}
	if err := relpath.Validate(rel); err != nil {
		return "", fmt.Errorf("%w: %v", route.ErrNotFound, err)
	}
	return "/" + rel, nil
}

func (e *Edge) servePlain(w http.ResponseWriter, r *http.Request) error {
	p, err := cleanPlainPath(r.URL.Path)
	if err != nil {
		return err
	}
	if p == route.Prefix+"notify" {
		return e.serveNotify(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errMethod
	}
	if r.URL.RawQuery != "" {
		// Not a file (a long-poll, a search): pass through, never stored.
		return e.passThrough(w, r, p+"?"+r.URL.RawQuery)
	}
	ver := e.version(p)
	key := plainKey(p, ver)
	obj, err := e.cfg.Cache.Get(key)
	if err == nil {
		defer obj.Close()
		m := obj.Meta()
		if e.fresh(m) {
			w.Header().Set("Cache-Status", csHit)
			e.met.requests.WithLabelValues("hit").Inc()
			e.serveCachedPlain(w, r, obj, m)
			return nil
		}
		return e.revalidate(w, r, p, key, ver, obj, m)
	}
	return e.fillPlain(w, r, p, key)
}

// fresh reports whether an entry may be served without asking upstream.
func (e *Edge) fresh(m cache.Meta) bool {
	if e.cfg.SetIDURL != "" {
		// The set-ID rule: fresh until the set changes, whatever the
		// upstream's Cache-Control (package servers send max-age=0,
		// private precisely because ordinary caches get catalogues wrong).
		return m.Generation == e.gen.Load()
	}
	return e.now().Before(m.Expires)
}

func (e *Edge) serveCachedPlain(w http.ResponseWriter, r *http.Request, obj *cache.Object, m cache.Meta) {
	setPlainHeaders(w.Header(), m)
	if notModified(r, m.ETag, m.LastModified) {
		writeNotModified(w, m.LastModified)
		return
	}
	serveCached(w, r, obj, m.LastModified, e.met.bytesCache)
}

func setPlainHeaders(h http.Header, m cache.Meta) {
	if m.ETag != "" {
		h.Set("ETag", m.ETag)
	}
	ct := m.ContentType
	if ct == "" {
		ct = "application/octet-stream"
	}
	h.Set("Content-Type", ct)
	h.Set("Accept-Ranges", "bytes")
	// Downstream caches revalidate with us (a 304 from here is cheap);
	// our own freshness rule is the set-ID's, not theirs to guess.
	if m.NoStore {
		h.Set("Cache-Control", "no-store")
	} else {
		h.Set("Cache-Control", ccSetFile)
	}
}

// revalidate asks the upstream whether a stale entry still holds: 304 keeps
// it (new generation and expiry), 200 replaces it, an unreachable upstream
// gets it served stale (stale-if-error).
func (e *Edge) revalidate(w http.ResponseWriter, r *http.Request, p string, key cache.Key, ver uint64, obj *cache.Object, m cache.Meta) error {
	hdr := http.Header{}
	if m.ETag != "" {
		hdr.Set("If-None-Match", m.ETag)
	}
	if !m.LastModified.IsZero() {
		hdr.Set("If-Modified-Since", m.LastModified.UTC().Format(http.TimeFormat))
	}
	gen := e.gen.Load()
	resp, err := e.pool.do(r.Context(), request{url: plainURL(p), header: hdr})
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && !errors.Is(err, ErrUpstreamDown) {
			return err // a real 404/410: the file is gone upstream
		}
		e.log.Warn("serving stale", "path", p, "err", err)
		w.Header().Set("Cache-Status", csStale)
		e.met.requests.WithLabelValues("stale").Inc()
		e.serveCachedPlain(w, r, obj, m)
		return nil
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		resp.Body.Close()
		nm := m
		nm.Generation = gen
		nm.Expires = e.expires(resp.Header, m.LastModified)
		if et := resp.Header.Get("ETag"); et != "" {
			nm.ETag = et
		}
		if err := e.cfg.Cache.UpdateMeta(key, nm); err != nil {
			e.log.Warn("update meta after 304", "path", p, "err", err)
		}
		w.Header().Set("Cache-Status", csRevalidated)
		e.met.requests.WithLabelValues("revalidated").Inc()
		e.serveCachedPlain(w, r, obj, nm)
		return nil
	case http.StatusOK:
		return e.replace(w, r, p, ver, resp, gen)
	default:
		resp.Body.Close()
		return &StatusError{URL: resp.Request.URL.String(), Status: resp.StatusCode}
	}
}

// plainURL maps a request path to its URL under an upstream base.
func plainURL(p string) func(*url.URL) string {
	return func(b *url.URL) string {
		q := ""
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p, q = p[:i], p[i+1:]
		}
		v := *b
		v.Path = strings.TrimRight(v.Path, "/") + p
		v.RawPath, v.RawQuery, v.Fragment = "", q, ""
		return v.String()
	}
}

// fetchPlain is the cache fill of a path: the upstream's bytes and its
// validators and freshness, under the generation current when it started.
func (e *Edge) fetchPlain(p string, first *http.Response, gen uint64) func(ctx context.Context) (io.ReadCloser, cache.Meta, error) {
	return func(ctx context.Context) (io.ReadCloser, cache.Meta, error) {
		resp := first
		if resp == nil {
			e.met.upstreamFetches.Inc()
			var err error
			resp, err = e.pool.do(ctx, request{url: plainURL(p), ok: func(s int) bool { return s == http.StatusOK }})
			if err != nil {
				return nil, cache.Meta{}, err
			}
		}
		return resp.Body, e.plainMeta(resp, gen), nil
	}
}

func (e *Edge) plainMeta(resp *http.Response, gen uint64) cache.Meta {
	h := resp.Header
	m := cache.Meta{Size: resp.ContentLength, ContentType: h.Get("Content-Type"), ETag: h.Get("ETag"), Generation: gen}
	if t, err := http.ParseTime(h.Get("Last-Modified")); err == nil {
		m.LastModified = t
	}
	if e.cfg.SetIDURL == "" {
		cc := parseCacheControl(h.Values("Cache-Control"))
		_, noStore := cc["no-store"]
		_, private := cc["private"]
		m.NoStore = noStore || private // a shared cache keeps neither
		m.Expires = e.expiresCC(h, cc, m.LastModified)
	}
	return m
}

// expires computes an RFC 9111 expiry: s-maxage, then max-age, then Expires
// minus Date, then a heuristic of a tenth of the time since Last-Modified
// (at most a day); no-cache means always revalidate. The upstream's Age is
// subtracted.
func (e *Edge) expires(h http.Header, lastModified time.Time) time.Time {
	return e.expiresCC(h, parseCacheControl(h.Values("Cache-Control")), lastModified)
}

// expiresCC is expires with h's Cache-Control already parsed, so a fill
// parses it once for both NoStore and Expires.
func (e *Edge) expiresCC(h http.Header, cc map[string]string, lastModified time.Time) time.Time {
	now := e.now()
	if _, ok := cc["no-cache"]; ok {
		return time.Time{}
	}
	age := time.Duration(0)
	if a, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && a > 0 {
		age = time.Duration(a) * time.Second
	}
	for _, k := range []string{"s-maxage", "max-age"} {
		if v, ok := cc[k]; ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return time.Time{} // an invalid max-age is stale (RFC 9111 4.2.1)
			}
			return now.Add(time.Duration(min(n, 1<<31))*time.Second - age)
		}
	}
	if x := h.Get("Expires"); x != "" {
		exp, err := http.ParseTime(x)
		if err != nil {
			return time.Time{}
		}
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			date = now
		}
		return now.Add(exp.Sub(date) - age)
	}
	if !lastModified.IsZero() {
		date, err := http.ParseTime(h.Get("Date"))
		if err != nil {
			date = now
		}
		if d := date.Sub(lastModified) / 10; d > 0 {
			return now.Add(min(d, 24*time.Hour) - age)
		}
	}
	return time.Time{}
}

// parseCacheControl parses Cache-Control directives into lower-case names
// and their (unquoted) values.
func parseCacheControl(vals []string) map[string]string {
	cc := map[string]string{}
	for _, v := range vals {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			if d == "" {
				continue
			}
			name, val, _ := strings.Cut(d, "=")
			cc[strings.ToLower(strings.TrimSpace(name))] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return cc
}

// fillPlain fills a missing entry and streams it.
func (e *Edge) fillPlain(w http.ResponseWriter, r *http.Request, p string, key cache.Key) error {
	gen := e.gen.Load()
	if e.negative(p, gen) {
		w.Header().Set("Cache-Status", csNegative)
		e.met.requests.WithLabelValues("negative").Inc()
		return fmt.Errorf("%w: %s (cached 404)", route.ErrNotFound, p)
	}
	s, err := e.cfg.Cache.Fill(key, cache.FillSpec{Size: -1, Fetch: e.fetchPlain(p, nil, gen)})
	if err != nil {
		return fmt.Errorf("fill %s: %w", p, err)
	}
	defer s.Close()
	m, err := s.Meta()
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && !errors.Is(err, ErrUpstreamDown) && (se.Status == http.StatusNotFound || se.Status == http.StatusGone) {
			e.setNegative(p, gen)
		}
		return err
	}
	setPlainHeaders(w.Header(), m)
	w.Header().Set("Cache-Status", csMiss)
	e.met.requests.WithLabelValues("miss").Inc()
	e.serveStream(w, r, s, m.Size, m.LastModified, e.met.bytesUpstream)
	return nil
}

// replace stores and serves the new bytes of a path whose revalidation
// answered 200, under the path's next key version. The revalidation's
// response is the fill's body unless another request's fill got there first.
func (e *Edge) replace(w http.ResponseWriter, r *http.Request, p string, seen uint64, resp *http.Response, gen uint64) error {
	var taken atomic.Bool
	defer func() {
		if !taken.Swap(true) {
			resp.Body.Close() // the fill fetched for itself (a concurrent replacement)
		}
	}()
	fetch := e.fetchPlain(p, nil, gen)
	key := plainKey(p, e.nextVersion(p, seen))
	s, err := e.cfg.Cache.Fill(key, cache.FillSpec{Size: -1, Fetch: func(ctx context.Context) (io.ReadCloser, cache.Meta, error) {
		if !taken.Swap(true) {
			return resp.Body, e.plainMeta(resp, gen), nil
		}
		return fetch(ctx)
	}})
	if err != nil {
		return fmt.Errorf("fill %s: %w", p, err)
	}
	defer s.Close()
	m, err := s.Meta()
	if err != nil {
		return err
	}
	setPlainHeaders(w.Header(), m)
	w.Header().Set("Cache-Status", csReplaced)
	e.met.requests.WithLabelValues("replaced").Inc()
	e.serveStream(w, r, s, m.Size, m.LastModified, e.met.bytesUpstream)
	return nil
}

// passThrough proxies a request that is not cached (a query string).
func (e *Edge) passThrough(w http.ResponseWriter, r *http.Request, p string) error {
	resp, err := e.lp.do(r.Context(), request{method: r.Method, url: plainURL(p)})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := w.Header()
	for _, k := range []string{"Content-Type", "Content-Length", "ETag", "Last-Modified", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	h.Set("Cache-Status", csUncacheable)
	e.met.requests.WithLabelValues("pass").Inc()
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return nil
	}
	cw := &countingWriter{ResponseWriter: w, flush: true}
	_, err = io.Copy(cw, resp.Body)
	e.met.bytesUpstream.Add(float64(cw.n))
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return nil
}

// maxNegative bounds the negative cache; when full it starts over.
const maxNegative = 10000

// negEntry is a remembered 404 of plain mode.
type negEntry struct {
	gen     uint64
	expires time.Time
}

// negative reports whether the upstream answered 404 for p recently: pkg
// asks for absent fallback names (meta.txz, data.tzst, packagesite.tzst) on
// every update, and each would be an upstream round trip. With a set-ID URL
// a 404 holds until the set changes (at most NegativeTTL×30); without, for
// NegativeTTL.
func (e *Edge) negative(p string, gen uint64) bool {
	if e.cfg.NegativeTTL < 0 {
		return false
	}
	e.negMu.Lock()
	defer e.negMu.Unlock()
	n, ok := e.neg[p]
	if !ok {
		return false
	}
	if (e.negativePerGeneration() && n.gen != gen) || !e.now().Before(n.expires) {
		delete(e.neg, p)
		return false
	}
	return true
}

// negativePerGeneration reports whether a remembered 404 holds until the
// set changes (plain mode with a set-ID URL), rather than for NegativeTTL.
func (e *Edge) negativePerGeneration() bool {
	return e.cfg.SetIDURL != "" && !e.manifestMode()
}

func (e *Edge) setNegative(p string, gen uint64) {
	if e.cfg.NegativeTTL < 0 {
		return
	}
	ttl := e.cfg.NegativeTTL
	if e.negativePerGeneration() {
		ttl *= 30
	}
	e.negMu.Lock()
	defer e.negMu.Unlock()
	if e.neg == nil || len(e.neg) >= maxNegative {
		e.neg = make(map[string]negEntry)
	}
	e.neg[p] = negEntry{gen: gen, expires: e.now().Add(ttl)}
}
