package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// PublishLocal publishes srcDir as cfg.Set into root, holding root's lock
// throughout: hash, copy the objects root lacks (layout.PutFile), sign the
// manifest and the new SETS, layout.Commit. If the content equals the live
// set's, no set is created (Result.New is false) — but a SETS that does not
// announce the live set (a Commit killed after switching `current`) is
// repaired. A rerun after a kill at any point completes the publish.
func PublishLocal(ctx context.Context, cfg Config, root *layout.Root, srcDir string) (res Result, err error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	if inside(root.Dir, srcDir) || inside(srcDir, root.Dir) {
		return Result{}, fmt.Errorf("%w: source %s and root %s overlap", ErrConfig, srcDir, root.Dir)
	}
	unlock, err := root.Lock(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	// Under the lock, the root's state is the one the commit will see.
	st, err := readLocal(root, cfg.Set)
	if err != nil {
		return Result{}, err
	}
	// Copy each object the root lacks as soon as it is hashed: the copies'
	// fsyncs then overlap the hashing of the next files. An object copied
	// for a publish that fails later is collected by GC after its grace.
	// Files unchanged since the announced set need no look at all: a set's
	// objects stay while it is retained.
	if cfg.HashWorkers == 0 {
		cfg.HashWorkers = 4 * runtime.GOMAXPROCS(0)
	}
	cp, cctx := newCopier(ctx, &cfg, root, st.announced)
	items, hst, err := prepare(cctx, &cfg, srcDir, hashHooks{done: func(f File) error { return cp.add(cctx, f) }, store: cp.store})
	if err != nil {
		cp.cancel() // no use copying objects of a failed publish
	}
	// A failed copy cancels the hashing: then its error is the one to report.
	if cerr := cp.wait(); cerr != nil && ctx.Err() == nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = cerr
	}
	stage := cp.stager.finish(err != nil)
	if stage != nil {
		// A no-op once the Commit took the Stage over.
		defer func() { err = errors.Join(err, stage.Discard()) }()
	}
	if err != nil {
		return Result{}, err
	}
	faultHook("hashed")
	res, err = commitLocal(ctx, &cfg, root, items, st, cp.seen, stage)
	res.Hash = hst
	res.Sent += cp.sent
	res.SentSize += cp.sentSize
	return res, err
}

// copier copies objects into a root while the source is still being hashed.
type copier struct {
	*sender
	root  *layout.Root
	queue chan File

	announced *manifest.Manifest // files equal to its entries are skipped; may be nil
	stager    *stager            // links the set's files into the root as they are known

	mu   sync.Mutex             // guards seen
	seen map[digest.SHA256]bool // digests present or queued; read by the caller after wait
}

// newCopier starts the copy workers. The context it returns is done when
// a copy fails or cancel is called; hashing runs under it.
func newCopier(ctx context.Context, cfg *Config, root *layout.Root, announced *manifest.Manifest) (*copier, context.Context) {
	s, gctx := newSender(ctx, cfg)
	c := &copier{sender: s, announced: announced, root: root, queue: make(chan File, 256), seen: map[digest.SHA256]bool{},
		stager: newStager(root, cfg.Set)}
	for range cfg.jobs(localJobs) {
		s.g.Go(func() error { return consume(gctx, s.g, c.queue, c.copy) })
	}
	return c, gctx
}

// store copies f into the root while hashing it (layout.CopyFile: one read
// of the source instead of two) when f is likely new content: its path
// changed since the hash cache saw it (cached), or it is new to the
// announced set, or its size differs there. Other files are hashed first
// and copied only if the root lacks them: a republish without a hash cache
// must not write every file again.
func (c *copier) store(f *File, cached bool, progress func(int64)) (bool, int64, error) {
	if !cached && c.announced != nil {
		if e, ok := c.announced.Lookup(f.Path); ok && e.Size == f.Size {
			return false, 0, nil
		}
	}
	c.begin()
	res, err := c.root.CopyFile(f.Abs, layout.CopyOptions{
		Progress: progress,
		Open:     c.cfg.open,
		Check:    func(n int64) error { return checkUnchanged(f, n) },
		SizeHint: f.Size,
	})
	var ce *ChangedError
	switch {
	case errors.As(err, &ce):
		return false, res.Size, ce
	case err != nil:
		return false, res.Size, fmt.Errorf("%s: %w", f.Path, err)
	}
	f.SHA256, f.stored = res.SHA256, true
	if res.New {
		c.done(res.Size)
		c.cfg.event(Event{Stage: StageSend, N: res.Size})
	}
	return true, res.Size, nil
}

// add queues f for copying unless an object of its digest is queued
// already, or store stored it.
func (c *copier) add(ctx context.Context, f File) error {
	if f.stored {
		c.mu.Lock()
		c.seen[f.SHA256] = true
		c.mu.Unlock()
		c.stager.add(f.Path, f.SHA256, true)
		return nil
	}
	if c.announced != nil {
		if e, ok := c.announced.Lookup(f.Path); ok && e.SHA256 == f.SHA256 {
			c.mu.Lock()
			c.seen[f.SHA256] = true
			c.mu.Unlock()
			c.stager.add(f.Path, f.SHA256, false)
			return nil
		}
	}
	c.mu.Lock()
	dup := c.seen[f.SHA256]
	c.seen[f.SHA256] = true
	c.mu.Unlock()
	if dup {
		// Its object is stored or queued: the Stage links it if it is
		// there by then, else the Commit does.
		c.stager.add(f.Path, f.SHA256, true)
		return nil
	}
	select {
	case c.queue <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *copier) copy(f File) error {
	ok, err := c.root.HasObject(f.SHA256)
	if err != nil {
		return err
	}
	if !ok {
		c.begin()
		if err := putFile(c.root, Item{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Src: f.Abs}); err != nil {
			return err
		}
		c.done(f.Size)
		c.cfg.event(Event{Stage: StageSend, N: f.Size})
	}
	c.stager.add(f.Path, f.SHA256, true)
	return nil
}

// wait ends the queue and waits for the copies.
func (c *copier) wait() error {
	close(c.queue)
	return c.finish("copy objects", "objects copied")
}

// Rollback publishes, as a new set ID, the content of the retained set
// cfg.Set `to`: IDs only ever increase, and every path whose content differs
// from the live set gets the new ID as its Modified time. The objects must
// still be in root (not yet collected).
func Rollback(ctx context.Context, cfg Config, root *layout.Root, to setid.ID) (res Result, err error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	unlock, err := root.Lock(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	data, _, err := root.Manifest(cfg.Set, to)
	if err != nil {
		return Result{}, fmt.Errorf("rollback: %w", err)
	}
	old, err := manifest.Decode(data)
	if err != nil {
		return Result{}, fmt.Errorf("rollback: set %s %s: %w", cfg.Set, to, err)
	}
	st, err := readLocal(root, cfg.Set)
	if err != nil {
		return Result{}, err
	}
	return commitLocal(ctx, &cfg, root, manifestItems(old), st, nil, nil)
}

// manifestItems returns the files of m as Items of a publish whose objects
// the target already holds (no Src).
func manifestItems(m *manifest.Manifest) []Item {
	items := make([]Item, len(m.Entries))
	for i, e := range m.Entries {
		items[i] = Item{Path: e.Path, Size: e.Size, SHA256: e.SHA256}
	}
	return items
}

// localState is what a root holds for one set before a publish.
type localState struct {
	sets      setid.Sets
	setsData  []byte
	setsSig   []byte
	announced *manifest.Manifest // the manifest SETS names; nil if none
	annData   []byte
	annSig    []byte
	live      setid.ID // `current`; zero if none
}

func readLocal(root *layout.Root, set string) (*localState, error) {
	st := &localState{}
	var err error
	st.setsData, st.setsSig, err = root.Sets()
	switch {
	case errors.Is(err, layout.ErrNotFound):
		st.setsData, st.setsSig = nil, nil
	case err != nil:
		return nil, err
	default:
		if st.sets, err = setid.ParseSets(bytes.NewReader(st.setsData)); err != nil {
			return nil, fmt.Errorf("SETS: %w", err)
		}
	}
	if st.live, err = root.Live(set); err != nil && !errors.Is(err, layout.ErrNotFound) {
		return nil, err
	}
	if e, ok := st.sets.Lookup(set); ok {
		if st.announced, st.annData, st.annSig, err = localManifest(root, set, e.ID); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func localManifest(root *layout.Root, set string, id setid.ID) (*manifest.Manifest, []byte, []byte, error) {
	data, sig, err := root.Manifest(set, id)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := manifest.Decode(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("manifest of %s %s: %w", set, id, err)
	}
	return m, data, sig, nil
}

// sameContent reports whether items are exactly m's files.
func sameContent(items []Item, m *manifest.Manifest) bool {
	if m == nil || len(items) != len(m.Entries) {
		return false
	}
	for i, it := range items {
		e := m.Entries[i]
		if it.Path != e.Path || it.Size != e.Size || it.SHA256 != e.SHA256 {
			return false
		}
	}
	return true
}

// commitLocal is PublishLocal after hashing; the caller holds the lock and
// read st under it. present lists digests known to be in root already
// (nil: none).
func commitLocal(ctx context.Context, cfg *Config, root *layout.Root, items []Item, st *localState,
	present map[digest.SHA256]bool, stage *layout.Stage) (Result, error) {
	log := cfg.logger()
	now := cfg.now()
	res := Result{Set: cfg.Set, Files: len(items)}
	for _, it := range items {
		res.Bytes += it.Size
	}
	v, err := cfg.verifier()
	if err != nil {
		return res, err
	}
	annID := liveID(st.announced)
	res.Previous = annID
	// A Commit killed after switching `current`, before SETS: the live set
	// is ahead of what SETS announces. If it holds this very content,
	// finishing its Commit is the whole publish.
	if st.live.After(annID) {
		cur, data, sig, err := localManifest(root, cfg.Set, st.live)
		if err == nil && cur.Previous == annID && sameContent(items, cur) && !cur.Expired(now) {
			if err := commitSet(ctx, cfg, root, st, cur, data, sig, v, now, nil); err != nil {
				return res, err
			}
			log.Info("interrupted commit completed", "set", cfg.Set, "set_id", cur.ID)
			res.ID, res.New = cur.ID, true
			return res, nil
		}
	}
	// The new ID must also be after every set directory already there: a
	// Commit killed after moving its set into sets/ leaves one, and its ID
	// cannot be reused for other bytes (its clients may have seen it).
	floor := st.live
	if ids, err := root.SetIDs(cfg.Set); err == nil && len(ids) > 0 && ids[len(ids)-1].After(floor) {
		floor = ids[len(ids)-1]
	}
	m, changed := buildManifest(cfg.Set, items, st.announced, floor, now, cfg.valid())
	// Equal to what SETS announces, but `current` serves another set (a
	// killed Commit of content since reverted): a new set must replace it.
	changed = changed || st.live != annID
	if !changed {
		res.ID = annID
		if !setsAnnounce(st, v, cfg.Set, annID) {
			if err := commitSet(ctx, cfg, root, st, st.announced, st.annData, st.annSig, v, now, nil); err != nil {
				return res, err
			}
			log.Info("SETS repaired", "set", cfg.Set, "set_id", annID)
		}
		log.Info("nothing changed", "set", cfg.Set, "set_id", annID)
		return res, nil
	}
	res.ID = m.ID
	objs := uniqueObjects(items)
	if present != nil {
		objs = slices.DeleteFunc(objs, func(o Item) bool { return present[o.SHA256] })
	}
	n, size, err := putFiles(ctx, cfg, root, objs)
	res.Sent, res.SentSize = n, size
	if err != nil {
		return res, err
	}
	faultHook("sent")
	data, sig, err := m.Sign(cfg.Signer)
	if err != nil {
		return res, fmt.Errorf("sign manifest: %w", err)
	}
	faultHook("signed")
	if err := commitSet(ctx, cfg, root, st, m, data, sig, v, now, stage); err != nil {
		return res, err
	}
	res.New = true
	log.Info("set committed", "set", cfg.Set, "set_id", m.ID, "files", len(items), "bytes", res.Bytes)
	return res, nil
}

// setsAnnounce reports whether the SETS on disk names set at id with the
// manifest on disk, signed by v.
func setsAnnounce(st *localState, v *sign.Verifier, set string, id setid.ID) bool {
	if st.announced == nil {
		return true // nothing published, nothing to announce
	}
	sets, err := manifest.OpenSets(st.setsData, st.setsSig, v)
	if err != nil {
		return false
	}
	e, ok := sets.Lookup(set)
	return ok && e == setid.Entry{Set: set, ID: id, Manifest: digest.Sum(st.annData)} &&
		bytes.Equal(st.setsData, sets.Bytes())
}

// commitSet commits set m, signed as data and sig, with a freshly signed
// SETS announcing it. Rerun on a set already built (a Commit killed
// midway), it completes that Commit: layout.Commit converges on a rerun.
func commitSet(ctx context.Context, cfg *Config, root *layout.Root, st *localState, m *manifest.Manifest,
	data, sig []byte, v *sign.Verifier, now time.Time, stage *layout.Stage) error {
	setsData, setsSig := manifest.SignSets(st.sets.With(setid.Entry{Set: cfg.Set, ID: m.ID, Manifest: digest.Sum(data)}), cfg.Signer)
	c := layout.Commit{Manifest: m, ManifestData: data, ManifestSig: sig, SetsData: setsData, SetsSig: setsSig, Stage: stage}
	return root.Commit(ctx, c, v, now)
}

// putFiles copies the objects root lacks from their source files.
func putFiles(ctx context.Context, cfg *Config, root *layout.Root, objs []Item) (int, int64, error) {
	log := cfg.logger()
	var todo []Item
	var total int64
	for _, o := range objs {
		ok, err := root.HasObject(o.SHA256)
		if err != nil {
			return 0, 0, err
		}
		if ok {
			continue
		}
		if o.Src == "" {
			return 0, 0, fmt.Errorf("%s: object %s is no longer stored (collected?)", o.Path, o.SHA256)
		}
		todo = append(todo, o)
		total += o.Size
	}
	if len(todo) == 0 {
		return 0, 0, nil
	}
	log.Info("copying missing objects", "objects", len(todo), "of", len(objs), "bytes", total)
	start := time.Now()
	cfg.event(Event{Stage: StageSend, Start: true, Total: total})
	defer cfg.event(Event{Stage: StageSend, End: true})
	err := forEach(ctx, cfg.jobs(localJobs), todo, func(_ context.Context, o Item) error {
		if err := putFile(root, o); err != nil {
			return err
		}
		cfg.event(Event{Stage: StageSend, N: o.Size})
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("copy objects: %w", err)
	}
	log.Info("objects copied", "objects", len(todo), "bytes", total, "dur", time.Since(start))
	return len(todo), total, nil
}

// putFile copies one object from its source file. Bytes that are not the
// object (the source changed after it was hashed) are a *ChangedError.
func putFile(root *layout.Root, o Item) error {
	err := root.PutFile(o.SHA256, o.Size, o.Src)
	var me *digest.MismatchError
	var se *digest.SizeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me) || errors.As(err, &se):
		return &ChangedError{Path: o.Path, Detail: "while copied: " + err.Error()}
	}
	return fmt.Errorf("%s: %w", o.Path, err)
}

// inside reports whether dir is parent or the same directory (symlinks
// resolved), so a root never publishes itself.
func inside(dir, parent string) bool {
	d, err1 := filepath.EvalSymlinks(dir)
	p, err2 := filepath.EvalSymlinks(parent)
	if err1 != nil || err2 != nil {
		return false // Scan or Open reports the missing directory
	}
	rel, err := filepath.Rel(p, d)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
