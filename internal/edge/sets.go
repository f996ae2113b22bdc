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
	"slices"
	"strings"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// graceDepth is how many superseded manifests of a set stay served for paths
// the live one dropped: a client with a one- or two-set-old catalogue still
// gets its packages.
const graceDepth = 2

// maxManifestBytes bounds a compressed manifest fetched from upstream.
const maxManifestBytes = 256 << 20

// setState is one set as the edge serves it. Immutable once published in a
// snapshot.
type setState struct {
	live      *manifest.Manifest
	liveBytes []byte // the manifest file, served to downstream edges
	liveSig   []byte
	liveSum   digest.SHA256        // of liveBytes: what SETS names it by
	liveETag  string               // etagOf(liveSum)
	sigETag   string               // setsETag(liveSig)
	older     []*manifest.Manifest // newest first, at most graceDepth
	// Response header values of the live set, made once, not per request.
	nameHdr, idHdr []string
}

// newSetState returns the state of a set whose live manifest is m, read
// from data and sig: their digests are taken once, not on every request
// or poll.
func newSetState(m *manifest.Manifest, data, sig []byte) *setState {
	sum := digest.Sum(data)
	return &setState{live: m, liveBytes: data, liveSig: sig, liveSum: sum, liveETag: etagOf(sum), sigETag: setsETag(sig),
		nameHdr: []string{m.Set}, idHdr: []string{m.ID.String()}}
}

// lookup maps path to its entry and the ID of the set it was found in: the
// live manifest first, then (grace) the older ones for a path the live set
// dropped.
func (s *setState) lookup(path string) (manifest.Entry, setid.ID, bool) {
	if e, ok := s.live.Lookup(path); ok {
		return e, s.live.ID, true
	}
	for _, m := range s.older {
		if e, ok := m.Lookup(path); ok {
			return e, m.ID, true
		}
	}
	return manifest.Entry{}, setid.ID{}, false
}

// snapshot is everything a request needs to be answered from one set. It is
// immutable: a set switch builds a new one and swaps the pointer, so every
// request sees the old sets or the new ones, never a mix.
type snapshot struct {
	sets     map[string]*setState
	setsData []byte // the verified SETS file, served downstream
	setsSig  []byte
	etag     string        // `"<sha256 of setsData>"`
	changed  chan struct{} // closed when a newer snapshot replaces this one
	upstream setid.Sets    // the newest verified upstream SETS (for lag)
}

func newSnapshot() *snapshot {
	return &snapshot{sets: map[string]*setState{}, changed: make(chan struct{})}
}

// isKnown reports whether name is a set served here or named by the
// verified upstream SETS (then unavailable until its manifest verifies).
func (s *snapshot) isKnown(name string) bool {
	if _, ok := s.sets[name]; ok {
		return true
	}
	_, ok := s.upstream.Lookup(name)
	return ok
}

// setsETag returns the strong validator of a SETS or manifest file.
func setsETag(data []byte) string { return etagOf(digest.Sum(data)) }

// etagOf returns the strong validator of a file whose sha256 is d.
func etagOf(d digest.SHA256) string { return `"` + d.String() + `"` }

// stateDir layout (under Config.StateDir):
//
//	SETS, SETS.minisig               the last verified upstream SETS
//	manifests/<set>/<id>[.minisig]   verified manifests: the live one and up to graceDepth older
func (e *Edge) manifestPath(set string, id setid.ID) string {
	return filepath.Join(e.cfg.StateDir, "manifests", filepath.FromSlash(set), id.String())
}

// loadState rebuilds the snapshot from what a previous run verified and
// persisted, so a restart serves at once without its upstream. Everything is
// verified again: the disk is not trusted more than the network.
func (e *Edge) loadState() error {
	data, err := os.ReadFile(filepath.Join(e.cfg.StateDir, "SETS"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("load SETS: %w", err)
	}
	sig, err := os.ReadFile(filepath.Join(e.cfg.StateDir, "SETS.minisig"))
	if err != nil {
		return fmt.Errorf("load SETS: %w", err)
	}
	sets, err := manifest.OpenSets(data, sig, e.cfg.Verifier)
	if err != nil {
		e.log.Warn("stored SETS does not verify; starting empty", "err", err)
		return nil
	}
	snap := newSnapshot()
	snap.setsData, snap.setsSig, snap.etag, snap.upstream = data, sig, setsETag(data), sets
	now := e.now()
	for _, ent := range sets {
		ids, err := e.storedIDs(ent.Set)
		if err != nil {
			e.log.Warn("list stored manifests", "set", ent.Set, "err", err)
			continue
		}
		var st *setState
		for _, id := range ids { // newest first
			if id.After(ent.ID) {
				continue
			}
			mdata, msig, m, err := e.loadManifest(ent.Set, id, now)
			if err != nil {
				e.log.Warn("stored manifest does not verify", "set", ent.Set, "set_id", id.String(), "err", err)
				continue
			}
			if st == nil {
				st = newSetState(m, mdata, msig)
				if id != ent.ID || st.liveSum != ent.Manifest {
					// SETS names a manifest we never stored: keep the newest we
					// have as live, refresh will catch up.
					e.log.Warn("stored manifest is not the one SETS names", "set", ent.Set, "set_id", id.String())
				}
				continue
			}
			if len(st.older) < graceDepth {
				st.older = append(st.older, m)
			}
		}
		if st != nil {
			snap.sets[ent.Set] = st
		}
	}
	e.snap.Store(snap)
	for name, st := range snap.sets {
		e.log.Info("set loaded", "set", name, "set_id", st.live.ID.String())
	}
	return nil
}

// storedIDs lists the IDs of the manifests stored for set, newest first.
func (e *Edge) storedIDs(set string) ([]setid.ID, error) {
	ents, err := os.ReadDir(filepath.Join(e.cfg.StateDir, "manifests", filepath.FromSlash(set)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []setid.ID
	for _, de := range ents {
		if id, err := setid.Parse(de.Name()); err == nil && de.Type().IsRegular() {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b setid.ID) int { return b.Compare(a) })
	return ids, nil
}

func (e *Edge) loadManifest(set string, id setid.ID, now time.Time) (data, sig []byte, m *manifest.Manifest, err error) {
	p := e.manifestPath(set, id)
	if data, err = os.ReadFile(p); err != nil {
		return nil, nil, nil, err
	}
	if sig, err = os.ReadFile(p + ".minisig"); err != nil {
		return nil, nil, nil, err
	}
	m, err = manifest.Open(data, sig, e.cfg.Verifier, now)
	if errors.Is(err, manifest.ErrExpired) && m != nil {
		err = nil // a stored live manifest that expired is served, flagged degraded
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if m.Set != set || m.ID != id {
		return nil, nil, nil, fmt.Errorf("%w: stored as %s/%s, names %s/%s", manifest.ErrMismatch, set, id, m.Set, m.ID)
	}
	return data, sig, m, nil
}

// fetchSmall GETs a small upstream file (SETS, a signature, a manifest),
// failing over between upstreams, and returns its body and ETag.
func (e *Edge) fetchSmall(ctx context.Context, u func(*url.URL) string, limit int64) ([]byte, string, error) {
	resp, err := e.pool.do(ctx, request{url: u})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", &StatusError{URL: resp.Request.URL.String(), Status: resp.StatusCode}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", resp.Request.URL, err)
	}
	if int64(len(b)) > limit {
		return nil, "", fmt.Errorf("%s: over %d bytes", resp.Request.URL, limit)
	}
	return b, resp.Header.Get("ETag"), nil
}

// refresh reads the upstream's SETS, verifies it, and switches every set
// whose ID advanced to its newly verified manifest. It is the only writer of
// e.snap and runs on one goroutine (the tracker), so it needs no lock.
func (e *Edge) refresh(ctx context.Context) error {
	data, sig, err := e.fetchSets(ctx)
	if err != nil {
		return err
	}
	sets, err := manifest.OpenSets(data, sig, e.cfg.Verifier)
	if err != nil {
		e.met.verifyFailures.WithLabelValues("sets").Inc()
		return fmt.Errorf("upstream SETS: %w", err)
	}
	cur := e.snap.Load()
	next := &snapshot{sets: make(map[string]*setState, len(cur.sets)), setsData: cur.setsData,
		setsSig: cur.setsSig, etag: cur.etag, changed: make(chan struct{}), upstream: sets}
	for k, v := range cur.sets {
		next.sets[k] = v
	}
	now := e.now()
	var switched []string
	refused := false
	for _, ent := range sets {
		st, err := e.advance(ctx, cur.sets[ent.Set], ent, now)
		if err != nil {
			e.log.Warn("set not switched", "set", ent.Set, "set_id", ent.ID.String(), "err", err)
			refused = true
			continue
		}
		if st != nil {
			next.sets[ent.Set] = st
			switched = append(switched, ent.Set)
		}
	}
	// The edge re-serves the upstream's signed SETS only if it serves every
	// set at the ID that SETS names: it cannot sign a SETS of its own, and
	// a SETS naming a refused (rolled back, expired, forged) set would tell
	// downstream edges to fetch a set this edge does not serve. Until every
	// set advances, downstream keeps the previous SETS, which matches.
	setsChanged := !bytes.Equal(data, cur.setsData) && !refused
	if setsChanged {
		if err := e.persistSets(data, sig); err != nil {
			return err
		}
		next.setsData, next.setsSig, next.etag = data, sig, setsETag(data)
	}
	if len(switched) == 0 && !setsChanged {
		// Only the upstream view (lag) changed: the long-poll waiters keep
		// waiting on the same channel.
		next.changed = cur.changed
		e.snap.Store(next)
		return nil
	}
	e.snap.Store(next)
	close(cur.changed)
	for _, name := range switched {
		st := next.sets[name]
		e.log.Info("set switched", "set", name, "set_id", st.live.ID.String())
		e.prefetch(ctx, st.live)
	}
	return nil
}

// advance returns the new state of one set if ent names a newer (or a
// re-signed) verified manifest, nil if nothing changes, or an error if the
// offered manifest is refused.
func (e *Edge) advance(ctx context.Context, st *setState, ent setid.Entry, now time.Time) (*setState, error) {
	if st != nil {
		if ent.ID == st.live.ID && st.liveSum == ent.Manifest {
			return nil, nil
		}
		if ent.ID != st.live.ID {
			if err := setid.CheckAdvance(st.live.ID, ent.ID); err != nil {
				e.met.verifyFailures.WithLabelValues("rollback").Inc()
				return nil, err
			}
		}
	}
	data, _, err := e.fetchSmall(ctx, func(b *url.URL) string { return route.ManifestURL(b, ent.Set, ent.ID, false) }, maxManifestBytes)
	if err != nil {
		return nil, err
	}
	sig, _, err := e.fetchSmall(ctx, func(b *url.URL) string { return route.ManifestURL(b, ent.Set, ent.ID, true) }, sign.MaxSignatureBytes)
	if err != nil {
		return nil, err
	}
	if got := digest.Sum(data); got != ent.Manifest {
		e.met.verifyFailures.WithLabelValues("manifest").Inc()
		return nil, fmt.Errorf("manifest %s/%s: %w", ent.Set, ent.ID, &digest.MismatchError{Want: ent.Manifest, Got: got})
	}
	m, err := manifest.Open(data, sig, e.cfg.Verifier, now)
	if err != nil {
		// An expired manifest is never switched to.
		e.met.verifyFailures.WithLabelValues("manifest").Inc()
		return nil, err
	}
	if m.Set != ent.Set || m.ID != ent.ID {
		e.met.verifyFailures.WithLabelValues("manifest").Inc()
		return nil, fmt.Errorf("%w: SETS names %s/%s, manifest is %s/%s", manifest.ErrMismatch, ent.Set, ent.ID, m.Set, m.ID)
	}
	next := newSetState(m, data, sig)
	if st != nil {
		if m.ID == st.live.ID {
			// Re-signed (pkgpublish refresh): same files, later expiry.
			if !m.Expires.After(st.live.Expires) {
				return nil, fmt.Errorf("re-signed manifest %s/%s does not extend the expiry", m.Set, m.ID)
			}
			next.older = st.older
		} else {
			next.older = append([]*manifest.Manifest{st.live}, st.older...)
			if len(next.older) > graceDepth {
				next.older = next.older[:graceDepth]
			}
		}
	}
	if err := e.persistManifest(m, data, sig, next.older); err != nil {
		return nil, err
	}
	return next, nil
}

// fetchSets fetches SETS and its signature. If the upstream switched between
// the two requests they do not match: one retry reads a consistent pair.
func (e *Edge) fetchSets(ctx context.Context) (data, sig []byte, err error) {
	for try := 0; ; try++ {
		data, _, err = e.fetchSmall(ctx, func(b *url.URL) string { return route.SetsURL(b, false) }, setid.MaxSetsBytes)
		if err != nil {
			return nil, nil, err
		}
		sig, _, err = e.fetchSmall(ctx, func(b *url.URL) string { return route.SetsURL(b, true) }, sign.MaxSignatureBytes)
		if err != nil {
			return nil, nil, err
		}
		if _, verr := e.cfg.Verifier.Verify(data, sig); verr == nil || try == 1 {
			return data, sig, nil
		}
	}
}

func (e *Edge) persistSets(data, sig []byte) error {
	// Signature first: a crash between the two leaves a SETS that fails to
	// verify against the old signature, and a restart then refetches.
	if err := atomicfile.WriteFile(filepath.Join(e.cfg.StateDir, "SETS.minisig"), sig, 0o644); err != nil {
		return fmt.Errorf("persist SETS: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(e.cfg.StateDir, "SETS"), data, 0o644); err != nil {
		return fmt.Errorf("persist SETS: %w", err)
	}
	return nil
}

// persistManifest stores a verified manifest and removes the stored ones no
// longer kept for grace.
func (e *Edge) persistManifest(m *manifest.Manifest, data, sig []byte, keep []*manifest.Manifest) error {
	p := e.manifestPath(m.Set, m.ID)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("persist manifest: %w", err)
	}
	if err := atomicfile.WriteFile(p+".minisig", sig, 0o644); err != nil {
		return fmt.Errorf("persist manifest: %w", err)
	}
	if err := atomicfile.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("persist manifest: %w", err)
	}
	// Pruning is best effort: the manifest is stored, and a leftover old
	// one only costs disk, never correctness.
	ids, _ := e.storedIDs(m.Set)
	for _, id := range ids {
		if id == m.ID || slices.ContainsFunc(keep, func(k *manifest.Manifest) bool { return k.ID == id }) {
			continue
		}
		q := e.manifestPath(m.Set, id)
		_ = os.Remove(q)
		_ = os.Remove(q + ".minisig")
	}
	return nil
}

// isCatalogue reports whether a path is a repository catalogue file that
// every client fetches first (pkg's meta and packagesite, apt's indexes):
// those are prefetched after a switch.
func isCatalogue(p string) bool {
	base := p[strings.LastIndexByte(p, '/')+1:]
	switch base {
	case "meta.conf", "meta.txz", "meta.pkg", "meta.tzst", "Release", "InRelease", "Release.gpg":
		return true
	}
	for _, pre := range []string{"packagesite.", "data.", "files.", "Packages", "Sources"} {
		if strings.HasPrefix(base, pre) {
			return true
		}
	}
	return false
}
