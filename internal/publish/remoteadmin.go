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

// RefreshRemote is Refresh on the master c: it re-signs the live manifest
// of cfg.Set with Expires = now + cfg.Valid, keeping its set ID, files and
// Created time, and SETS to name the new manifest bytes. The manifest read
// from the master must verify with cfg.Signer's own key (expired or not):
// the master does not get to choose what is signed again.
func RefreshRemote(ctx context.Context, cfg Config, c *Client) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	v, err := cfg.verifier()
	if err != nil {
		return Result{}, err
	}
	for attempt := 1; ; attempt++ {
		sets, live, err := remoteLive(ctx, c, cfg.Set, v)
		if err != nil {
			return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, err)
		}
		if live == nil {
			return Result{}, fmt.Errorf("refresh %s: set %w", cfg.Set, ErrNotFound)
		}
		m := *live
		m.Expires = cfg.now().Truncate(time.Second).Add(cfg.valid())
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

// RollbackRemote is Rollback on the master c: it publishes, as a new set
// ID, the content of the retained set cfg.Set `to`. That set's manifest is
// read from the master and must verify with cfg.Signer's own key (the
// master does not get to choose what is signed); its objects must still be
// on the master (not yet collected by gc): nothing is uploaded.
func RollbackRemote(ctx context.Context, cfg Config, c *Client, to setid.ID) (Result, error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	v, err := cfg.verifier()
	if err != nil {
		return Result{}, err
	}
	if err := c.CheckAuth(ctx); err != nil {
		return Result{}, err
	}
	sets, live, err := remoteLive(ctx, c, cfg.Set, nil)
	if err != nil {
		return Result{}, err
	}
	old, err := remoteManifest(ctx, c, cfg.Set, to, nil, v)
	if errors.Is(err, ErrNotFound) {
		return Result{}, fmt.Errorf("rollback: set %s %s is not retained on the master: %w", cfg.Set, to, err)
	}
	if err != nil {
		return Result{}, fmt.Errorf("rollback: %w", err)
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
		return Result{}, fmt.Errorf("rollback: the master no longer holds %d of the %d objects of set %s %s (collected): %w; publish that content again from its files",
			len(missing), len(ds), cfg.Set, to, ErrMissingObjects)
	}
	return commitRemote(ctx, &cfg, c, items, true, sets, live)
}
