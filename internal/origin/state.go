package origin

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// The SETS files in the root (DESIGN.md, "The master's repository root").
const (
	setsName    = "SETS"
	setsSigName = "SETS.minisig"
)

// setsState is one immutable snapshot of SETS. A new snapshot replaces the
// old one (atomic pointer) and then closes the old one's changed channel:
// that one close is the broadcast that wakes every long-poller parked on
// it, however many there are.
type setsState struct {
	data, sig []byte
	etag      string // `"<sha256 hex>"` of data; "" while there is no SETS
	sigETag   string
	mod       time.Time       // SETS mtime: its Last-Modified
	stamp     [2]fileStamp    // SETS and SETS.minisig as last stat'ed
	names     map[string]bool // sets that have a `current`
	ids       sync.Map        // set name → []setid.ID retained (grace), filled lazily
	changed   chan struct{}   // closed when a newer snapshot replaces this one
}

// fileStamp tells whether a file was replaced. The inode is part of it:
// SETS is replaced by rename, and mtimes are only as fine as the kernel's
// clock tick, so two same-size SETS written within one tick differ by
// inode alone.
type fileStamp struct {
	mod  time.Time
	size int64
	ino  uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fileStamp{}, nil
	}
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size(), inode(fi)}, nil
}

// Refresh re-reads SETS if it changed on disk since the last look, and
// wakes the long-pollers if its content did. Run calls it every
// PollInterval; tests call it after changing the root behind the server's
// back.
// While SETS cannot be read, the last snapshot keeps being served and
// Health is degraded.
func (s *Server) Refresh() error { return s.refresh(false) }

// refresh is Refresh; force re-reads SETS even if it looks unchanged (a
// commit through this server just wrote it).
func (s *Server) refresh(force bool) error {
	s.setsMu.Lock()
	defer s.setsMu.Unlock()
	err := s.refreshLocked(force)
	switch {
	case err != nil && !s.setsFailed:
		s.setsFailed = true
		s.log.Error("sets unreadable, serving the last good snapshot", "err", err)
		if s.cfg.Health != nil {
			s.cfg.Health.SetDegraded("sets", "SETS unreadable: "+err.Error())
		}
	case err == nil && s.setsFailed:
		s.setsFailed = false
		s.log.Info("sets readable again")
		if s.cfg.Health != nil {
			s.cfg.Health.ClearDegraded("sets")
		}
	}
	return err
}

func (s *Server) refreshLocked(force bool) error {
	old := s.sets.Load()
	var stamp [2]fileStamp
	var err error
	for i, name := range []string{setsName, setsSigName} {
		if stamp[i], err = stampOf(filepath.Join(s.root.Dir, name)); err != nil {
			return fmt.Errorf("stat %s: %w", name, err)
		}
	}
	if stamp == old.stamp && old.names != nil && !force {
		s.checkLive(old)
		return nil
	}
	data, sig, err := s.root.Sets()
	if err != nil && !errors.Is(err, layout.ErrNotFound) {
		return err
	}
	if data != nil && s.cfg.Verifier != nil {
		// A publisher killed between writing SETS and its signature leaves a
		// pair that does not verify: keep serving the last pair that did
		// (edges would refuse the new one anyway) until a rerun repairs it.
		if _, err := manifest.OpenSets(data, sig, s.cfg.Verifier); err != nil {
			return err
		}
	}
	names, err := s.root.SetNames()
	if err != nil {
		return err
	}
	st := &setsState{data: data, sig: sig, stamp: stamp, mod: stamp[0].mod,
		names: make(map[string]bool, len(names)), changed: make(chan struct{})}
	for _, n := range names {
		st.names[n] = true
	}
	if data != nil {
		st.etag = etagOf(data)
		st.sigETag = etagOf(sig)
	}
	if bytes.Equal(data, old.data) && bytes.Equal(sig, old.sig) && len(names) == len(old.names) {
		// Touched, not changed: keep the waiters parked, but take the new
		// stamp (and drop cached retained IDs, which GC may have changed).
		st.changed = old.changed
		s.sets.Store(st)
		s.checkLive(st)
		return nil
	}
	s.dropRefreshed(old.data, data)
	s.sets.Store(st)
	close(old.changed)
	s.log.Info("sets changed", "sets", len(names), "sha256", st.etag)
	s.checkLive(st)
	return nil
}

// dropRefreshed forgets the cached manifests that a refresh replaced: a
// set whose SETS entry keeps its ID but names other manifest bytes (a new
// expiry). Unparsable SETS drop nothing: the verified pair on disk was
// parsed by its writer, and a commit changes the ID anyway.
func (s *Server) dropRefreshed(oldData, newData []byte) {
	if oldData == nil || newData == nil {
		return
	}
	before, err1 := setid.ParseSets(bytes.NewReader(oldData))
	after, err2 := setid.ParseSets(bytes.NewReader(newData))
	if err1 != nil || err2 != nil {
		return
	}
	for _, e := range after {
		if o, ok := before.Lookup(e.Set); ok && o.ID == e.ID && o.Manifest != e.Manifest {
			s.cache.drop(mkey{e.Set, e.ID})
		}
	}
}

func etagOf(b []byte) string { return `"` + digest.Sum(b).String() + `"` }

// checkLive updates the live-set gauges and flags every set whose live
// manifest has expired (still served, degraded).
func (s *Server) checkLive(st *setsState) {
	now := s.cfg.Now()
	for name := range st.names {
		s.live.revalidate(name)
		id, err := s.root.Live(name)
		if err != nil {
			continue // unpublished meanwhile; the next snapshot drops it
		}
		s.met.liveID.WithLabelValues(name).Set(float64(id.Time().Unix()))
		s.met.liveAge.WithLabelValues(name).Set(now.Sub(id.Time()).Seconds())
		m, err := s.manifest(name, id)
		if err != nil {
			s.log.Error("live manifest unreadable", "set", name, "set_id", id.String(), "err", err)
			continue
		}
		key := "expired:" + name
		if m.Expired(now) {
			if s.cfg.Health != nil {
				s.cfg.Health.SetDegraded(key, fmt.Sprintf("set %s: live manifest %s expired at %s",
					name, id, m.Expires.UTC().Format(time.RFC3339)))
			}
		} else if s.cfg.Health != nil {
			s.cfg.Health.ClearDegraded(key)
		}
	}
}

// isSet reports whether name is a published set (for route.Parse).
func (st *setsState) isSet(name string) bool { return st.names[name] }

// retained returns the retained set IDs of set, oldest first, cached for
// the lifetime of the snapshot.
func (s *Server) retained(st *setsState, set string) ([]setid.ID, error) {
	if v, ok := st.ids.Load(set); ok {
		return v.([]setid.ID), nil
	}
	ids, err := s.root.SetIDs(set)
	if err != nil {
		return nil, err
	}
	st.ids.Store(set, ids)
	return ids, nil
}

// grace finds path in the newest of the GraceSets retained sets older than
// live that has it.
func (s *Server) grace(st *setsState, set string, live setid.ID, path string) (*setView, manifest.Entry, bool) {
	ids, err := s.retained(st, set)
	if err != nil {
		return nil, manifest.Entry{}, false
	}
	i, _ := slices.BinarySearchFunc(ids, live, setid.ID.Compare)
	for n := 0; i > 0 && n < s.cfg.GraceSets; n++ {
		i--
		v, err := s.manifest(set, ids[i])
		if err != nil {
			continue // collected meanwhile, or broken: not a grace candidate
		}
		if e, ok := v.Lookup(path); ok {
			return v, e, true
		}
	}
	return nil, manifest.Entry{}, false
}

// setView is a parsed manifest with what serving its files needs on every
// request, computed once: the set's directory and its response headers.
type setView struct {
	*manifest.Manifest
	dir     string   // sets/<set>/<id>: manifest paths are joined to it
	setHdr  []string // X-Pkgcdn-Set value
	idHdr   []string // X-Pkgcdn-Set-Id value
	lastMod sync.Map // setid.ID → Last-Modified value ([]string), filled lazily
}

// lastModified returns the Last-Modified header value of an entry modified
// in the set modified, as http.ServeContent writes it (nil for a zero
// time, which it omits). A manifest has one value per set of its history,
// so they are formatted once and kept with the manifest.
func (v *setView) lastModified(modified setid.ID) []string {
	if lm, ok := v.lastMod.Load(modified); ok {
		return lm.([]string)
	}
	t := modified.Time()
	if t.IsZero() || t.Equal(time.Unix(0, 0)) {
		return nil
	}
	lm := []string{t.UTC().Format(http.TimeFormat)}
	v.lastMod.Store(modified, lm)
	return lm
}

// filePath returns the path of a manifest entry. Entry paths passed
// relpath.Validate when the manifest was decoded.
func (v *setView) filePath(e manifest.Entry) string {
	return v.dir + string(filepath.Separator) + filepath.FromSlash(e.Path)
}

// manifest returns the parsed manifest of (set, id) from the cache, loading
// it once however many requests ask at the same time. Set IDs are
// immutable, so a cached manifest never goes stale; after a switch the new
// live ID is simply a new key and the old one ages out of the LRU.
func (s *Server) manifest(set string, id setid.ID) (*setView, error) {
	return s.cache.get(mkey{set, id}, func() (*setView, error) {
		data, _, err := s.root.Manifest(set, id)
		if err != nil {
			return nil, err
		}
		m, err := manifest.Decode(data)
		if err != nil {
			return nil, fmt.Errorf("manifest of %s %s: %w", set, id, err)
		}
		if m.Set != set || m.ID != id {
			return nil, fmt.Errorf("manifest of %s %s names set %s %s", set, id, m.Set, m.ID)
		}
		return s.newSetView(m), nil
	})
}

// newSetView returns the view of the set m describes.
func (s *Server) newSetView(m *manifest.Manifest) *setView {
	return &setView{Manifest: m, dir: s.root.SetDir(m.Set, m.ID), setHdr: []string{m.Set}, idHdr: []string{m.ID.String()}}
}

// keepManifest caches m, just committed from the bytes now on disk, so
// that serving its set (and the refresh after the commit) does not decode
// it again: 30,000 entries take tens of milliseconds.
func (s *Server) keepManifest(m *manifest.Manifest) {
	_, _ = s.cache.get(mkey{m.Set, m.ID}, func() (*setView, error) { return s.newSetView(m), nil })
}

type mkey struct {
	set string
	id  setid.ID
}

// manifestCache is an LRU of parsed manifests with one load per key in
// flight. It is safe for concurrent use.
type manifestCache struct {
	max int

	mu    sync.Mutex // guards order, items
	order *list.List // of *mentry, most recent first
	items map[mkey]*list.Element
}

type mentry struct {
	key   mkey
	ready chan struct{} // closed when m, err are set
	m     *setView
	err   error
}

func newManifestCache(max int) *manifestCache {
	return &manifestCache{max: max, order: list.New(), items: make(map[mkey]*list.Element)}
}

// drop forgets k: its next get loads it again. A load in flight finishes
// for its callers but is not kept.
func (c *manifestCache) drop(k mkey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.order.Remove(el)
		delete(c.items, k)
	}
}

func (c *manifestCache) get(k mkey, load func() (*setView, error)) (*setView, error) {
	c.mu.Lock()
	if el, ok := c.items[k]; ok {
		c.order.MoveToFront(el)
		e := el.Value.(*mentry)
		c.mu.Unlock()
		<-e.ready
		return e.m, e.err
	}
	e := &mentry{key: k, ready: make(chan struct{})}
	c.items[k] = c.order.PushFront(e)
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*mentry).key)
	}
	c.mu.Unlock()

	e.m, e.err = load()
	close(e.ready)
	if e.err != nil {
		// Errors are not cached: a set being committed right now may be
		// readable a moment later.
		c.mu.Lock()
		if el, ok := c.items[k]; ok && el.Value.(*mentry) == e {
			c.order.Remove(el)
			delete(c.items, k)
		}
		c.mu.Unlock()
	}
	return e.m, e.err
}
