// Package publish is the client side of publishing a package set: it scans
// and hashes a source tree (in parallel, with a quick-check hash cache),
// decides which objects the target lacks, sends only those, builds and signs
// the set's manifest and the new SETS file, and commits the set — into a
// local repository root (package layout) or to a remote master over the
// upload API of internal/origin/PUBLISH_API.md.
//
// To a remote master, objects of at most BatchObjectBytes travel in batch
// uploads (POST /.pkgcdn/publish/batch: many objects in one request, see
// Client.PutObjects) and larger ones in one PUT each; a master without
// batch uploads gets PUTs only.
//
// A publish whose content equals the live set's creates no set. A publish
// interrupted at any point leaves the live set untouched, and a rerun sends
// only what is still missing.
package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Config configures a publish. Set and Signer are required.
type Config struct {
	// Set is the set name, e.g. "FreeBSD:14:amd64/latest".
	Set string
	// Signer signs the manifest and SETS.
	Signer *sign.Signer
	// TrustedKeys are public keys (as sign.NewVerifier takes them) that,
	// besides the Signer's own, may have signed what a remote publish,
	// refresh or rollback reads from the master and signs again (SETS, the
	// live manifest): other publishers of the same master, or this
	// publisher's key before a rotation. Nothing else is signed again.
	TrustedKeys []string
	// SeenFile is the file in which a remote publish, refresh or rollback
	// remembers the newest set IDs it saw verified on each master, and
	// refuses a master that offers older ones (see seenIDs). If "", none.
	SeenFile string
	// Valid is how long the new manifest stays valid. If zero, manifest.DefaultValidity.
	Valid time.Duration
	// Now returns the current time (set IDs, Created, Expires). If nil, time.Now.
	Now func() time.Time
	// HashWorkers is the number of files hashed at once. If zero,
	// GOMAXPROCS; for a local publish 4×GOMAXPROCS, since its hash workers
	// also copy new files into the root and may wait for the disk.
	HashWorkers int
	// Jobs is the number of objects sent at once: uploads to a remote master
	// (if zero, 4) or copies into a local root of files hashed before (if
	// zero, 16; new files are copied by the hash workers as they hash).
	Jobs int
	// HashCache is the hash cache file. If "", no cache: every file is read.
	HashCache string
	// Logger receives lifecycle events. If nil, nothing is logged.
	Logger *slog.Logger
	// Progress, if not nil, receives progress events, possibly from several
	// goroutines at once.
	Progress func(Event)

	// open replaces os.Open for hashing and sending (tests count reads).
	open func(name string) (io.ReadCloser, error)
	// retainBudget, if positive, replaces retainBudget (tests).
	retainBudget int64
}

// Stage names a phase of a publish that reports progress.
type Stage string

// The stages that report progress.
const (
	StageHash Stage = "hash" // reading and hashing the source tree
	StageSend Stage = "send" // copying or uploading missing objects
)

// Event is one progress report. A stage starts with an Event whose Start is
// set and Total is the number of bytes it will process (0: not known yet,
// as for copies that overlap hashing), continues with
// Events whose N is the number of bytes just processed, and ends with one
// whose End is set.
type Event struct {
	Stage Stage
	Start bool
	Total int64
	N     int64
	End   bool
}

// Result describes a finished publish.
type Result struct {
	Set      string
	ID       setid.ID // the new set's ID, or the live one if nothing changed
	Previous setid.ID // the ID live before the publish
	New      bool     // false: content equal to the live set, no set created
	Files    int      // files in the set
	Bytes    int64    // sum of the files' sizes
	Hash     HashStats
	Sent     int   // objects copied or uploaded
	SentSize int64 // bytes copied or uploaded
}

// ErrConfig is wrapped by errors in a Config or in arguments.
var ErrConfig = errors.New("invalid publish configuration")

func (c *Config) check() error {
	if err := setid.ValidateName(c.Set); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Signer == nil {
		return fmt.Errorf("%w: no signing key", ErrConfig)
	}
	if c.Valid < 0 {
		return fmt.Errorf("%w: negative validity", ErrConfig)
	}
	return nil
}

func (c *Config) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Config) valid() time.Duration {
	if c.Valid == 0 {
		return manifest.DefaultValidity
	}
	return c.Valid
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Config) event(e Event) {
	if c.Progress != nil {
		c.Progress(e)
	}
}

// verifier returns a verifier trusting the signer's own public key and
// TrustedKeys.
func (c *Config) verifier() (*sign.Verifier, error) {
	v, err := sign.NewVerifier(append([]string{c.Signer.Public()}, c.TrustedKeys...)...)
	if err != nil {
		return nil, fmt.Errorf("%w: trusted keys: %w", ErrConfig, err)
	}
	return v, nil
}

// Item is one file of a set to publish.
type Item struct {
	Path   string
	Size   int64
	SHA256 digest.SHA256
	Src    string // file to copy or upload from; "" if the target already holds the object
}

// hashHooks are what a publish plugs into prepare's hashing: done gets
// each file as soon as its digest is known (from several goroutines at
// once), so sending can overlap hashing; store and retain are HashConfig's.
// Each may be nil.
type hashHooks struct {
	done   func(File) error
	store  func(f *File, cached bool, progress func(int64)) (bool, int64, error)
	retain *retainer
}

// prepare scans and hashes srcDir, using and updating the hash cache.
func prepare(ctx context.Context, cfg *Config, srcDir string, hooks hashHooks) ([]Item, HashStats, error) {
	log := cfg.logger()
	files, err := Scan(ctx, srcDir)
	if err != nil {
		return nil, HashStats{}, err
	}
	var total int64
	for _, f := range files {
		total += f.Size
	}
	log.Info("source scanned", "files", len(files), "bytes", total)
	var cache *HashCache
	if cfg.HashCache != "" {
		cache, err = LoadHashCache(cfg.HashCache)
		if err != nil {
			// The cache only saves time: go on with an empty one and overwrite it.
			log.Warn("hash cache ignored", "err", err)
		}
	}
	start := time.Now()
	cfg.event(Event{Stage: StageHash, Start: true, Total: total})
	hcfg := HashConfig{Workers: cfg.HashWorkers, Cache: cache, Open: cfg.open, Done: hooks.done, store: hooks.store, retain: hooks.retain}
	if cfg.Progress != nil {
		hcfg.Progress = func(n int64) { cfg.event(Event{Stage: StageHash, N: n}) }
	}
	st, err := Hash(ctx, files, hcfg)
	cfg.event(Event{Stage: StageHash, End: true})
	if cache != nil {
		// Saved even after a failure: the digests computed so far are right
		// and spare a rerun the work.
		if serr := cache.Save(); serr != nil {
			log.Warn("hash cache not saved", "err", serr)
		}
	}
	if err != nil {
		return nil, st, err
	}
	log.Info("source hashed", "files", st.Files, "cached", st.Cached, "bytes", st.Bytes, "dur", time.Since(start))
	items := make([]Item, len(files))
	for i, f := range files {
		items[i] = Item{Path: f.Path, Size: f.Size, SHA256: f.SHA256, Src: f.Abs}
	}
	return items, st, nil
}

// BuildManifest returns the manifest of a new set of items (sorted by Path,
// unique) published at now after live (nil for a set's first publish), and
// whether it differs from live. Its ID is setid.Next(live ID, now), Previous
// the live ID, and each entry's Modified the live entry's if that path had
// the same sha256 there, else the new ID — so a rollback to older content
// still gets new Modified times, which clients need to notice the change.
//
// changed is false when every path, size and sha256 equals live's and live
// has not expired at now: there is nothing to publish.
func BuildManifest(set string, items []Item, live *manifest.Manifest, now time.Time, valid time.Duration) (m *manifest.Manifest, changed bool) {
	return buildManifest(set, items, live, setid.ID{}, now, valid)
}

// buildManifest is BuildManifest with an ID that must also be after floor (a
// set whose Commit crashed after `current` was swapped, before SETS named it).
func buildManifest(set string, items []Item, live *manifest.Manifest, floor setid.ID, now time.Time, valid time.Duration) (m *manifest.Manifest, changed bool) {
	prev := liveID(live)
	id := setid.Next(prev, now)
	if !id.After(floor) {
		id = setid.Next(floor, now)
	}
	m = &manifest.Manifest{
		Set:      set,
		ID:       id,
		Previous: prev,
		Created:  now.UTC().Truncate(time.Second),
		Entries:  make([]manifest.Entry, len(items)),
	}
	m.Expires = m.Created.Add(valid)
	changed = live == nil || len(live.Entries) != len(items) || live.Expired(now)
	// Both lists are sorted by path: walk them side by side.
	var old []manifest.Entry
	if live != nil {
		old = live.Entries
	}
	j := 0
	for i, it := range items {
		e := manifest.Entry{Path: it.Path, Size: it.Size, SHA256: it.SHA256, Modified: id}
		for j < len(old) && old[j].Path < it.Path {
			j++
		}
		if j < len(old) && old[j].Path == it.Path && old[j].SHA256 == it.SHA256 && old[j].Size == it.Size {
			e.Modified = old[j].Modified
		} else {
			changed = true
		}
		m.Entries[i] = e
	}
	return m, changed
}

// liveID returns m's ID, or the zero ID for no manifest.
func liveID(m *manifest.Manifest) setid.ID {
	if m == nil {
		return setid.ID{}
	}
	return m.ID
}

// uniqueObjects returns one item per distinct sha256, in order.
func uniqueObjects(items []Item) []Item {
	seen := make(map[digest.SHA256]bool, len(items))
	var out []Item
	for _, it := range items {
		if !seen[it.SHA256] {
			seen[it.SHA256] = true
			out = append(out, it)
		}
	}
	return out
}

// faultHook lets crash tests kill the process between publish steps
// ("hashed", "sent", "signed"). Production code leaves it doing nothing.
var faultHook = func(step string) {}
