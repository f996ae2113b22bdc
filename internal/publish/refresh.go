package publish

import (
	"context"
	"errors"
	"fmt"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Refresh re-signs the live manifest of cfg.Set with Expires = now +
// cfg.Valid (never earlier than it was), keeping its set ID, files and
// Created time, and re-signs SETS to name the new manifest bytes.
func Refresh(ctx context.Context, cfg Config, root *layout.Root) (res Result, err error) {
	if err := cfg.check(); err != nil {
		return Result{}, err
	}
	unlock, err := root.Lock(ctx)
	if err != nil {
		return Result{}, err
	}
	defer func() { err = errors.Join(err, unlock()) }()
	v, err := cfg.verifier()
	if err != nil {
		return Result{}, err
	}
	st, err := readLocal(root, cfg.Set)
	if err != nil {
		return Result{}, err
	}
	if st.announced == nil {
		return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, layout.ErrNotFound)
	}
	if st.live != st.announced.ID {
		return Result{}, fmt.Errorf("refresh %s: live set %s is not the one SETS announces (%s): rerun publish first",
			cfg.Set, st.live, st.announced.ID)
	}
	now := cfg.now()
	m := *st.announced
	m.Expires = refreshedExpiry(st.announced, now, cfg.valid())
	data, sig, err := m.Sign(cfg.Signer)
	if err != nil {
		return Result{}, fmt.Errorf("refresh %s: %w", cfg.Set, err)
	}
	setsData, setsSig := manifest.SignSets(st.sets.With(setid.Entry{Set: cfg.Set, ID: m.ID, Manifest: digest.Sum(data)}), cfg.Signer)
	c := layout.Commit{Manifest: &m, ManifestData: data, ManifestSig: sig, SetsData: setsData, SetsSig: setsSig}
	if err := root.Refresh(ctx, c, v, now); err != nil {
		return Result{}, err
	}
	return Result{Set: cfg.Set, ID: m.ID, Previous: m.Previous, Files: len(m.Entries), Bytes: m.TotalSize()}, nil
}
