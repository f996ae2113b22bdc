package publish

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// ErrNotLive means the set ID a refresh names is not the master's live one.
var ErrNotLive = errors.New("not the live set")

// RefreshRemote is Refresh on the master c: it re-signs the live manifest
// of cfg.Set, which must be set ID `live` (the operator's word for what is
// current: a master must not get an older set re-signed as fresh), with
// Expires = now + cfg.Valid (never earlier than it was), keeping its set
// ID, files and Created time, and SETS to name the new manifest bytes.
// SETS read from the master must verify with cfg's keys, and the manifest
// be the bytes it names or verify itself: a refresh the master did not
// finish (new manifest, old SETS) is completed.
func RefreshRemote(ctx context.Context, cfg Config, c *Client, live setid.ID) (Result, error) {
	if live.IsZero() {
		return Result{}, fmt.Errorf("%w: refresh of %s: the live set ID to refresh is required", ErrConfig, cfg.Set)
	}
	v, err := beginRemote(ctx, &cfg, c)
	if err != nil {
		return Result{}, err
	}
	for attempt := 1; ; attempt++ {
		sets, err := remoteSets(ctx, &cfg, c, v)
		if err != nil {
			return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, err)
		}
		e, ok := sets.Lookup(cfg.Set)
		switch {
		case !ok:
			return Result{}, fmt.Errorf("refresh %s: set %w", cfg.Set, ErrNotFound)
		case e.ID != live:
			return Result{}, fmt.Errorf("refresh %s: %w: the master's live set is %s, not %s", cfg.Set, ErrNotLive, e.ID, live)
		}
		cur, err := remoteManifest(ctx, c, cfg.Set, e.ID, e.Manifest, bySETSOrSignature, v)
		if err != nil {
			return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, err)
		}
		m := *cur
		m.Expires = refreshedExpiry(cur, cfg.now(), cfg.valid())
		data, sig, err := m.Sign(cfg.Signer)
		if err != nil {
			return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, err)
		}
		setsData, setsSig := manifest.SignSets(sets.With(setid.Entry{Set: cfg.Set, ID: m.ID, Manifest: digest.Sum(data)}), cfg.Signer)
		err = c.Refresh(ctx, CommitRequest{Manifest: data, ManifestSig: sig, Sets: setsData, SetsSig: setsSig})
		switch {
		case err == nil:
			cfg.logger().Info("manifest refreshed", "set", cfg.Set, "set_id", m.ID, "expires", m.Expires)
			return Result{Set: cfg.Set, ID: m.ID, Previous: m.Previous, Files: len(m.Entries), Bytes: m.TotalSize()}, nil
		case attempt < commitAttempts && errors.Is(err, ErrSetsChanged):
			cfg.logger().Info("SETS changed meanwhile, retrying refresh", "set", cfg.Set)
		default:
			return Result{}, fmt.Errorf("refresh %s %s: %w", cfg.Set, m.ID, err)
		}
	}
}

// refreshedExpiry is the expiry a refresh gives m: now + valid, but never
// earlier than m's own (a daily refresh with a shorter --valid than the
// publish's must not fail, nor shorten it).
func refreshedExpiry(m *manifest.Manifest, now time.Time, valid time.Duration) time.Time {
	exp := now.Truncate(time.Second).Add(valid)
	if exp.Before(m.Expires) {
		return m.Expires
	}
	return exp
}

// RollbackRemote is Rollback on the master c: it publishes, as a new set
// ID, the content of the retained set cfg.Set `to`. Its manifest, the live
// one and SETS are read from the master and must verify with cfg's keys;
// nothing is uploaded, so the objects of `to` must still be on the master
// (not yet collected by gc).
func RollbackRemote(ctx context.Context, cfg Config, c *Client, to setid.ID) (res Result, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("rollback %s to %s: %w", cfg.Set, to, err)
		}
	}()
	v, err := beginRemote(ctx, &cfg, c)
	if err != nil {
		return Result{}, err
	}
	sets, live, err := remoteLive(ctx, &cfg, c, v)
	if err != nil {
		return Result{}, err
	}
	old, err := remoteManifest(ctx, c, cfg.Set, to, digest.SHA256{}, bySignature, v)
	if errors.Is(err, ErrNotFound) {
		return Result{}, fmt.Errorf("set not retained on the master: %w", err)
	}
	if err != nil {
		return Result{}, err
	}
	items := manifestItems(old)
	ds := make([]digest.SHA256, 0, len(items))
	for _, o := range uniqueObjects(items) {
		ds = append(ds, o.SHA256)
	}
	missing, err := c.Missing(ctx, ds)
	if err != nil {
		return Result{}, err
	}
	if len(missing) > 0 {
		return Result{}, fmt.Errorf("the master no longer holds %d of its %d objects (collected): %w; publish that content again from its files",
			len(missing), len(ds), ErrMissingObjects)
	}
	return commitRemote(ctx, &cfg, c, items, true, sets, live, v)
}
