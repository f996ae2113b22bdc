package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// maxHistory bounds how many set IDs of one set ListRemote follows back.
const maxHistory = 1000

// maxListedManifest bounds a manifest ListRemote reads (compressed; the
// edge takes no bigger one either): the server listed may be anyone's.
const maxListedManifest = 256 << 20

// SetInfo is one set ID that a master or mirror serves: the live one or a
// retained one.
type SetInfo struct {
	Set     string
	ID      setid.ID
	Live    bool
	Files   int
	Bytes   int64
	Expires time.Time
	Err     error // its manifest could not be read or decoded; the counts are zero
}

// Expired reports whether the set's manifest had expired at now.
func (s SetInfo) Expired(now time.Time) bool { return !now.Before(s.Expires) }

// ListRemote lists the set IDs that the master or mirror at base serves,
// over its public URLs: for each set in SETS (only set, if not ""), the
// live ID and, following each manifest's Previous, the older sets whose
// manifests it still holds (the retained ones: rollback targets), oldest
// first. Nothing is verified (pkgpublish verify --url does that, and a
// rollback verifies the manifest it re-signs): this is for finding IDs.
func ListRemote(ctx context.Context, hc *http.Client, base, set string) ([]SetInfo, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q: want http(s)://host[/path]", ErrConfig, base)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	data, err := getPublic(ctx, hc, route.SetsURL(u, false), setid.MaxSetsBytes)
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	sets, err := setid.ParseSets(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("list: SETS: %w", err)
	}
	if _, ok := sets.Lookup(set); set != "" && !ok {
		return nil, fmt.Errorf("list: set %s: %w", set, ErrNotFound)
	}
	var out []SetInfo
	for _, e := range sets {
		if set != "" && e.Set != set {
			continue
		}
		var chain []SetInfo
		for id, live := e.ID, true; !id.IsZero() && len(chain) < maxHistory; live = false {
			info := SetInfo{Set: e.Set, ID: id, Live: live}
			mdata, err := getPublic(ctx, hc, route.ManifestURL(u, e.Set, id, false), maxListedManifest)
			var se *StatusError
			if !live && errors.As(err, &se) && se.Code == http.StatusNotFound {
				break // collected: the retained sets end here
			}
			var m *manifest.Manifest
			if err == nil {
				m, err = manifest.Decode(mdata)
			}
			if err == nil {
				err = checkNames(m, e.Set, id)
			}
			if err != nil {
				info.Err = err
				chain = append(chain, info)
				break
			}
			info.Files, info.Bytes, info.Expires = len(m.Entries), m.TotalSize(), m.Expires
			chain = append(chain, info)
			if !id.After(m.Previous) {
				break // a Previous not older would loop
			}
			id = m.Previous
		}
		slices.Reverse(chain)
		out = append(out, chain...)
	}
	return out, nil
}
