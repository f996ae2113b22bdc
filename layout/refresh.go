package layout

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// Refresh replaces the manifest of the live set with c's, which must be the
// same manifest (set, ID, previous ID, creation time, entries) with the same
// or a later expiry, re-signed (else ErrNotRefresh): `pkgpublish refresh`
// keeps a live set servable past its expiry without a new set ID. The
// caller holds the Lock. It verifies as Commit does (signatures by v, not
// expired at now, SetsData byte-equal to the SETS on disk with this set's
// manifest sha256 replaced, else ErrSetsChanged); c's ID must be both the
// announced and the live ID (else ErrConflict). Then it replaces
// .pkgcdn/manifest.minisig, .pkgcdn/manifest, SETS and SETS.minisig, each
// atomically. A rerun after a crash completes it.
//
// The set's files do not change, but for a moment a reader may get the new
// manifest with the old signature (or SETS naming the old manifest): both
// fail verification and a reader retries.
func (r *Root) Refresh(ctx context.Context, c Commit, v *sign.Verifier, now time.Time) (err error) {
	m, err := manifest.Open(c.ManifestData, c.ManifestSig, v, now)
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	set, id := m.Set, m.ID
	defer func() {
		if err != nil {
			err = fmt.Errorf("refresh set %s %s: %w", set, id, err)
		}
	}()
	onDisk, announced, ok, err := r.readOffer(set, c, v)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("not in SETS: %w", ErrNotFound)
	}
	live, err := r.Live(set)
	if err != nil {
		return err
	}
	if announced.ID != id || live != id {
		return fmt.Errorf("%w: SETS announces %s and the live set is %s", ErrConflict, announced.ID, live)
	}
	oldData, _, err := r.Manifest(set, id)
	if err != nil {
		return err
	}
	old, err := manifest.Decode(oldData)
	if err != nil {
		return fmt.Errorf("manifest on disk: %w", err)
	}
	if old.Set != m.Set || old.ID != m.ID || old.Previous != m.Previous || !old.Created.Equal(m.Created) ||
		!slices.Equal(old.Entries, m.Entries) {
		return ErrNotRefresh
	}
	if m.Expires.Before(old.Expires) {
		// A replayed older refresh would pull the expiry in again.
		return fmt.Errorf("%w: it would expire at %s, before the live manifest (%s)", ErrNotRefresh,
			m.Expires.UTC().Format(time.RFC3339), old.Expires.UTC().Format(time.RFC3339))
	}
	entry := setid.Entry{Set: set, ID: id, Manifest: digest.Sum(c.ManifestData)}
	if !bytes.Equal(c.SetsData, onDisk.With(entry).Bytes()) {
		return fmt.Errorf("%w: the offered SETS is not the current SETS with %s %s", ErrSetsChanged, set, id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := r.SetDir(set, id)
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{
		// The signature before the manifest: until SETS names the new
		// bytes, the old manifest stays, which SETS vouches for by its
		// sha256 whatever the signature file holds.
		{filepath.Join(dir, filepath.FromSlash(ManifestSigFile)), c.ManifestSig, 0o444},
		{filepath.Join(dir, filepath.FromSlash(ManifestFile)), c.ManifestData, 0o444},
		{filepath.Join(r.Dir, setsFile), c.SetsData, 0o644},
		{filepath.Join(r.Dir, setsSigFile), c.SetsSig, 0o644},
	} {
		if err := writeIfChanged(f.path, f.data, f.perm); err != nil {
			return err
		}
		if err := faultHook("refresh-written"); err != nil {
			return err
		}
	}
	return nil
}
