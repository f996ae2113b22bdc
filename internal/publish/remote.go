package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// commitAttempts bounds the commits retried after a 409 sets_changed (another
// set was published meanwhile) or a 422 missing_objects (the master collected
// an object between our missing query and the commit).
const commitAttempts = 4

// PublishRemote publishes srcDir as cfg.Set to the master c: hash, ask which
// objects the master lacks, upload those (cfg.Jobs at once), then commit the
// signed manifest and SETS. At the first file that differs from the live
// set it hints the master to stage the set (Client.StageHint). A rerun
// after an interruption uploads only what the master still lacks.
func PublishRemote(ctx context.Context, cfg Config, c *Client, srcDir string) (Result, error) {
	v, err := beginRemote(ctx, &cfg, c)
	if err != nil {
		return Result{}, err
	}
	// The live manifest, read before hashing, says which files the master
	// surely holds (a live set's objects are never collected): only the
	// others are asked about, in batches, and uploaded while hashing goes on.
	sets, live, err := remoteLive(ctx, &cfg, c, v)
	if err != nil {
		return Result{}, err
	}
	if err := checkLiveAhead(&cfg, live); err != nil {
		return Result{}, err // before any hashing or upload
	}
	up, uctx := newUploader(ctx, &cfg, c, live)
	items, hst, err := prepare(uctx, &cfg, srcDir, hashHooks{done: func(f File) error { return up.add(uctx, f) }, retain: up.kept})
	if err != nil {
		up.cancel() // no use uploading objects of a failed publish
	}
	// A failed upload cancels the hashing: then its error is the one to report.
	if uerr := up.wait(uctx); uerr != nil && ctx.Err() == nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = uerr
	}
	if err != nil {
		return Result{}, err
	}
	faultHook("hashed")
	res, err := commitRemote(ctx, &cfg, c, items, true, sets, live, v)
	res.Hash = hst
	res.Sent += up.sent
	res.SentSize += up.sentSize
	return res, err
}

// beginRemote checks cfg, returns the verifier of what is read from the
// master, and checks the token with an empty missing query: a wrong token
// or URL fails before any long work.
func beginRemote(ctx context.Context, cfg *Config, c *Client) (*sign.Verifier, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	v, err := cfg.verifier()
	if err != nil {
		return nil, err
	}
	return v, c.CheckAuth(ctx)
}

// maxLiveAhead is how far ahead of this host's clock a master's live set
// ID may be. The next ID follows the live one (setid.Next): a master that
// claimed a live set dated years ahead would have every later publish
// signed with such an ID, which mirrors could never move past.
const maxLiveAhead = 24 * time.Hour

// checkLiveAhead refuses a live set dated more than maxLiveAhead after
// cfg's clock.
func checkLiveAhead(cfg *Config, live *manifest.Manifest) error {
	now := cfg.now()
	if id := liveID(live); id.Time().After(now.Add(maxLiveAhead)) {
		return fmt.Errorf("set %s: the master's live set %s is dated more than %v after this host's clock (%s): check both clocks, and the master",
			cfg.Set, id, maxLiveAhead, now.Format(time.RFC3339))
	}
	return nil
}

// commitRemote is PublishRemote after hashing, with the master's SETS and
// live manifest as read before (by remoteLive with v, which a re-read
// uses too). Unless sent, it first uploads every object the master lacks.
func commitRemote(ctx context.Context, cfg *Config, c *Client, items []Item, sent bool,
	sets setid.Sets, live *manifest.Manifest, v *sign.Verifier) (Result, error) {
	log := cfg.logger()
	now := cfg.now()
	res := Result{Set: cfg.Set, Files: len(items)}
	for _, it := range items {
		res.Bytes += it.Size
	}
	for attempt := 1; ; attempt++ {
		if attempt > 1 { // SETS changed meanwhile: read it again
			base := live
			var err error
			if sets, live, err = remoteLive(ctx, cfg, c, v); err != nil {
				return res, err
			}
			if liveID(live) != liveID(base) {
				// Another set was published, but also this one: never
				// silently replace a publish this run did not see.
				return res, fmt.Errorf("commit set %s: %w (live %s, this publish was built on %s)",
					cfg.Set, ErrConflict, liveID(live), liveID(base))
			}
		}
		if err := checkLiveAhead(cfg, live); err != nil {
			return res, err
		}
		m, changed := BuildManifest(cfg.Set, items, live, now, cfg.valid())
		res.ID, res.Previous = m.ID, m.Previous
		if !changed {
			res.ID, res.New = live.ID, false
			log.Info("nothing changed", "set", cfg.Set, "set_id", live.ID)
			return res, nil
		}
		if !sent {
			n, size, err := uploadMissing(ctx, cfg, c, uniqueObjects(items), nil)
			res.Sent, res.SentSize = n, size
			if err != nil {
				return res, err
			}
			sent = true
		}
		faultHook("sent")
		data, sig, err := m.Sign(cfg.Signer)
		if err != nil {
			return res, fmt.Errorf("sign manifest: %w", err)
		}
		entry := setid.Entry{Set: cfg.Set, ID: m.ID, Manifest: digest.Sum(data)}
		setsData, setsSig := manifest.SignSets(sets.With(entry), cfg.Signer)
		faultHook("signed")
		err = c.Commit(ctx, CommitRequest{Manifest: data, ManifestSig: sig, Sets: setsData, SetsSig: setsSig})
		var re *RemoteError
		switch {
		case err == nil:
			res.New = true
			log.Info("set committed", "set", cfg.Set, "set_id", m.ID)
			if cfg.SeenFile != "" {
				if err := recordSeen(cfg.SeenFile, c.base.String(), sets.With(entry)); err != nil {
					log.Warn("seen-IDs file not updated", "err", err) // the publish is done
				}
			}
			return res, nil
		case committed(ctx, c, entry):
			// A retried commit whose first attempt went through (the answer
			// was lost): the master now lists exactly our manifest.
			res.New = true
			return res, nil
		case attempt < commitAttempts && errors.Is(err, ErrSetsChanged):
			log.Info("SETS changed meanwhile, retrying commit", "set", cfg.Set)
		case attempt < commitAttempts && errors.As(err, &re) && len(re.Missing) > 0:
			log.Warn("master lacks objects at commit, sending them", "set", cfg.Set, "objects", len(re.Missing))
			want := make(map[digest.SHA256]bool, len(re.Missing))
			for _, d := range re.Missing {
				want[d] = true
			}
			n, size, err := uploadMissing(ctx, cfg, c, uniqueObjects(items), want)
			res.Sent, res.SentSize = res.Sent+n, res.SentSize+size
			if err != nil {
				return res, err
			}
		default:
			return res, fmt.Errorf("commit set %s %s: %w", cfg.Set, m.ID, err)
		}
	}
}

// committed reports whether the master's SETS lists exactly entry.
func committed(ctx context.Context, c *Client, entry setid.Entry) bool {
	data, _, err := c.Sets(ctx)
	if err != nil {
		return false
	}
	sets, err := setid.ParseSets(bytes.NewReader(data))
	if err != nil {
		return false
	}
	e, ok := sets.Lookup(entry.Set)
	return ok && e == entry
}

// remoteLive reads the master's SETS and the live manifest of set (nil if
// the set was never published), both verified with v: what pkgpublish signs
// again (SETS with its new entry; the Previous and the Modified times it
// takes from the live set) must not be the master's word alone. The
// manifest must be the one SETS names (its sha256); an expired one is
// accepted.
func remoteLive(ctx context.Context, cfg *Config, c *Client, v *sign.Verifier) (setid.Sets, *manifest.Manifest, error) {
	set := cfg.Set
	sets, err := remoteSets(ctx, cfg, c, v)
	if err != nil {
		return nil, nil, err
	}
	e, ok := sets.Lookup(set)
	if !ok {
		return sets, nil, nil
	}
	m, err := remoteManifest(ctx, c, set, e.ID, e.Manifest, bySETS, v)
	if err != nil {
		return nil, nil, err
	}
	return sets, m, nil
}

// remoteSets reads the master's SETS (nil if nothing was ever published
// there), verifies its signature with v, and checks it against (and
// records it in) cfg.SeenFile.
func remoteSets(ctx context.Context, cfg *Config, c *Client, v *sign.Verifier) (setid.Sets, error) {
	sets, err := verifiedSets(ctx, c, v)
	if err != nil || cfg.SeenFile == "" {
		return sets, err
	}
	seen, err := loadSeen(cfg.SeenFile)
	if err != nil {
		return nil, err
	}
	if err := seen.check(c.base.String(), cfg.SeenFile, sets); err != nil {
		return nil, fmt.Errorf("master SETS: %w", err)
	}
	return sets, seen.record(cfg.SeenFile, c.base.String(), sets)
}

// verifiedSets reads the master's SETS (nil if nothing was ever published
// there) and verifies its signature with v.
func verifiedSets(ctx context.Context, c *Client, v *sign.Verifier) (setid.Sets, error) {
	for try := 1; ; try++ {
		data, sig, err := c.Sets(ctx)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		sets, err := manifest.OpenSets(data, sig, v)
		if errors.Is(err, sign.ErrBadSignature) && try == 1 {
			continue // a commit between the two GETs: read the pair again
		}
		if err != nil {
			return nil, fmt.Errorf("master SETS: %w%s", err, untrustedHint(err))
		}
		return sets, nil
	}
}

// untrustedHint says what to do about a signature by an unknown key.
func untrustedHint(err error) string {
	if errors.Is(err, sign.ErrUnknownKey) {
		return " (signed by a key neither --key's nor a --trusted-key: add the other publishers' .pub, or the key used before a rotation)"
	}
	return ""
}

// manifestCheck says how remoteManifest trusts a manifest's bytes.
type manifestCheck int

const (
	// bySETS: the bytes must be those a verified SETS names (want).
	bySETS manifestCheck = iota
	// bySETSOrSignature: those bytes, or others whose own signature
	// verifies (a refresh the master did not finish).
	bySETSOrSignature
	// bySignature: no SETS names them (a retained set): their signature
	// must verify.
	bySignature
)

// remoteManifest reads the manifest of set id from the master and checks
// that it is authentic as how says (want is the sha256 a verified SETS
// names; signatures are checked with v, an expired manifest is accepted),
// and that it names set and id.
func remoteManifest(ctx context.Context, c *Client, set string, id setid.ID, want digest.SHA256, how manifestCheck, v *sign.Verifier) (*manifest.Manifest, error) {
	mdata, sig, err := c.Manifest(ctx, set, id)
	if err != nil {
		return nil, err
	}
	var m *manifest.Manifest
	switch got := digest.Sum(mdata); {
	case how != bySignature && got == want:
		// SETS, verified, vouches for these bytes by their sha256,
		// whatever the signature file holds.
		m, err = manifest.Decode(mdata)
	case how == bySETS:
		return nil, fmt.Errorf("master manifest %s %s: %w (not the bytes SETS names: if a refresh did not finish, rerun pkgpublish refresh --master --id %s)",
			set, id, &digest.MismatchError{Want: want, Got: got}, id)
	default:
		m, err = manifest.Open(mdata, sig, v, time.Time{}) // the zero time: expiry not checked
	}
	if err != nil {
		return nil, fmt.Errorf("master manifest %s %s: %w%s", set, id, err, untrustedHint(err))
	}
	return m, checkNames(m, set, id)
}

// checkNames checks that manifest m, fetched as set id, names set and id.
func checkNames(m *manifest.Manifest, set string, id setid.ID) error {
	if m.Set != set || m.ID != id {
		return fmt.Errorf("manifest of %s %s: %w: names %s %s", set, id, manifest.ErrMismatch, m.Set, m.ID)
	}
	return nil
}

// uploadMissing asks the master which of objs it lacks (only those in only,
// if not nil, which the master already said it lacks) and uploads them.
func uploadMissing(ctx context.Context, cfg *Config, c *Client, objs []Item, only map[digest.SHA256]bool) (int, int64, error) {
	log := cfg.logger()
	var missing []digest.SHA256
	if only == nil {
		ds := make([]digest.SHA256, len(objs))
		for i, o := range objs {
			ds[i] = o.SHA256
		}
		var err error
		if missing, err = c.Missing(ctx, ds); err != nil {
			return 0, 0, err
		}
	} else {
		for d := range only {
			missing = append(missing, d)
		}
	}
	byDigest := make(map[digest.SHA256]Item, len(objs))
	for _, o := range objs {
		byDigest[o.SHA256] = o
	}
	var todo []Object
	var total int64
	for _, d := range missing {
		o, ok := byDigest[d]
		if !ok || o.Src == "" {
			return 0, 0, fmt.Errorf("master lacks object %s that this publish cannot send", d)
		}
		todo = append(todo, Object{SHA256: o.SHA256, Size: o.Size, Path: o.Src, Name: o.Path})
		total += o.Size
	}
	log.Info("uploading missing objects", "objects", len(todo), "of", len(objs), "bytes", total)
	start := time.Now()
	cfg.event(Event{Stage: StageSend, Start: true, Total: total})
	defer cfg.event(Event{Stage: StageSend, End: true})
	progress, open := cfg.sendProgress(), cfg.opener()
	var sent atomic.Int64
	err := forEach(ctx, cfg.jobs(remoteJobs), batches(todo), func(ctx context.Context, unit []Object) error {
		if err := c.PutObjects(ctx, unit, open, progress); err != nil {
			return err
		}
		for _, o := range unit {
			sent.Add(o.Size)
		}
		return nil
	})
	if err != nil {
		return 0, sent.Load(), fmt.Errorf("upload: %w", err)
	}
	log.Info("objects uploaded", "objects", len(todo), "bytes", total, "dur", time.Since(start))
	return len(todo), total, nil
}

// missingBatch is how many hashed files are asked about at once while
// hashing goes on: small enough that uploads start early, large enough that
// 30,000 files cost a few dozen requests.
const missingBatch = 1000

// uploader asks the master which hashed objects it lacks, in batches, and
// uploads those, while the source is still being hashed: small ones in
// batch uploads, grouped within each answer of the master.
type uploader struct {
	*sender
	c    *Client
	live *manifest.Manifest // nil if none
	asks chan []File
	work chan []Object // units of upload: see batches

	progress func(int64)                         // cfg.sendProgress(), made once
	open     func(string) (io.ReadCloser, error) // cfg.opener()

	kept *retainer // the buffers of files kept from hash to upload

	mu        sync.Mutex // guards batch, batchKept, seen
	batch     []File
	batchKept int // buffer bytes the files in batch keep
	seen      map[digest.SHA256]bool

	hint sync.Once // Client.StageHint at the first file that differs from live
}

// newUploader starts the query and upload workers. The context it returns
// is done when one fails or cancel is called; hashing runs under it.
func newUploader(ctx context.Context, cfg *Config, c *Client, live *manifest.Manifest) (*uploader, context.Context) {
	s, gctx := newSender(ctx, cfg)
	g := s.g
	u := &uploader{sender: s, c: c, live: live,
		asks: make(chan []File, 64), work: make(chan []Object, 64), seen: map[digest.SHA256]bool{},
		progress: cfg.sendProgress(), open: cfg.opener(), kept: newRetainer(cfg.retainBudget)}
	g.Go(func() error {
		defer close(u.work)
		return consume(gctx, g, u.asks, func(b []File) error { return u.ask(gctx, b) })
	})
	for range cfg.jobs(remoteJobs) {
		g.Go(func() error {
			return consume(gctx, g, u.work, func(unit []Object) error { return u.put(gctx, unit) })
		})
	}
	return u, gctx
}

// add takes a hashed file: unless the live set has it or it is a duplicate,
// it joins the next missing query, which goes out when it has
// missingBatch files or its files keep the retainer's flush bytes.
func (u *uploader) add(ctx context.Context, f File) error {
	if u.live != nil {
		if e, ok := u.live.Lookup(f.Path); ok && e.SHA256 == f.SHA256 {
			u.kept.put(f.data)
			return nil
		}
	}
	if u.live != nil {
		// This publish will commit a change: let the master start
		// building the set's directory now (best effort).
		u.hint.Do(func() {
			u.g.Go(func() error {
				if err := u.c.StageHint(ctx, u.cfg.Set); err != nil {
					u.cfg.logger().Debug("stage hint refused", "err", err)
				}
				return nil
			})
		})
	}
	u.mu.Lock()
	if u.seen[f.SHA256] {
		u.mu.Unlock()
		u.kept.put(f.data)
		return nil
	}
	u.seen[f.SHA256] = true
	u.batch = append(u.batch, f)
	u.batchKept += cap(f.data)
	var full []File
	if len(u.batch) >= missingBatch || u.batchKept >= u.kept.flush {
		full, u.batch, u.batchKept = u.batch, nil, 0
	}
	u.mu.Unlock()
	if full == nil {
		return nil
	}
	select {
	case u.asks <- full:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ask sends one missing query and queues what the master lacks, grouped
// into units of upload.
func (u *uploader) ask(ctx context.Context, b []File) error {
	ds := make([]digest.SHA256, len(b))
	for i, f := range b {
		ds[i] = f.SHA256
	}
	missing, err := u.c.Missing(ctx, ds)
	if err != nil {
		return err
	}
	want := make(map[digest.SHA256]bool, len(missing))
	for _, d := range missing {
		want[d] = true
	}
	var objs []Object
	for _, f := range b {
		if want[f.SHA256] {
			objs = append(objs, Object{SHA256: f.SHA256, Size: f.Size, Path: f.Abs, Name: f.Path, data: f.data})
		} else {
			u.kept.put(f.data)
		}
	}
	for _, unit := range batches(objs) {
		select {
		case u.work <- unit:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// put uploads one unit: a batch or a single object, and gives back the
// buffers its objects kept.
func (u *uploader) put(ctx context.Context, unit []Object) error {
	u.begin()
	err := u.c.PutObjects(ctx, unit, u.open, u.progress)
	// A buffer is filled again only once the master surely read it all: a
	// batch answered 200 (the master reads a batch to its end before it
	// answers). A single PUT may be answered before its body is sent (the
	// master holds the object already), and a failed upload at any point;
	// the transport may then still be reading the body.
	reuse := err == nil && len(unit) > 1 && !u.c.noBatch.Load()
	for _, o := range unit {
		if reuse {
			u.kept.put(o.data)
		} else {
			u.kept.drop(o.data)
		}
	}
	if err != nil {
		return err
	}
	for _, o := range unit {
		u.done(o.Size)
	}
	return nil
}

// wait sends the last query, waits for the uploads and reports the first
// error. ctx is the context newUploader returned.
func (u *uploader) wait(ctx context.Context) error {
	u.mu.Lock()
	last := u.batch
	u.batch, u.batchKept = nil, 0
	u.mu.Unlock()
	if len(last) > 0 && ctx.Err() == nil {
		select {
		case u.asks <- last:
		case <-ctx.Done():
		}
	}
	close(u.asks)
	return u.finish("upload", "objects uploaded")
}
