package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// AuditConfig configures Audit. URL and Verifier are required.
type AuditConfig struct {
	// URL is the base URL of the master or mirror audited.
	URL string
	// Verifier holds the trusted public keys.
	Verifier *sign.Verifier
	// Sets limits the audit to these sets. If empty, every set SETS lists.
	Sets []string
	// Sample is how many files per set are fetched, chosen at random. If
	// zero, all of them.
	Sample int
	// Jobs is how many files are fetched at once. If zero, 4.
	Jobs int
	// HTTPClient fetches. If nil, one with a 5 minute overall timeout per request.
	HTTPClient *http.Client
	// Now is the time expiry is checked at. If nil, time.Now.
	Now func() time.Time
}

// AuditProblem is one thing the audited server serves wrong. Err is a
// *digest.MismatchError, a *digest.SizeError, an error naming the HTTP
// status, or the fetch error.
type AuditProblem struct {
	Set  string
	ID   setid.ID
	Path string // "" for a problem of the set itself (manifest, SETS entry)
	Err  error
}

// AuditSet summarizes one audited set.
type AuditSet struct {
	Set     string
	ID      setid.ID
	Files   int  // files in the manifest
	Checked int  // files fetched and compared
	Expired bool // the manifest has expired
}

// AuditReport is what Audit found.
type AuditReport struct {
	Sets     []AuditSet
	Problems []AuditProblem
}

// Audit checks a running master or mirror over HTTP as a client would see
// it: the SETS signature, each set's manifest (signature, sha256 named by
// SETS), then each file (or a sample) fetched by its set path and compared
// with the manifest's size and sha256. It returns an error only if SETS
// cannot be fetched or verified.
func Audit(ctx context.Context, cfg AuditConfig) (*AuditReport, error) {
	base, err := url.Parse(cfg.URL)
	if err != nil || base.Host == "" {
		return nil, fmt.Errorf("%w: URL %q", ErrConfig, cfg.URL)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	now := time.Now()
	if cfg.Now != nil {
		now = cfg.Now()
	}
	get := func(u string, limit int64) ([]byte, error) { return getPublic(ctx, hc, u, limit) }
	sdata, err := get(route.SetsURL(base, false), setid.MaxSetsBytes)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	ssig, err := get(route.SetsURL(base, true), sign.MaxSignatureBytes)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	sets, err := manifest.OpenSets(sdata, ssig, cfg.Verifier)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	rep := &AuditReport{}
	var mu sync.Mutex // guards rep.Problems
	problem := func(p AuditProblem) {
		mu.Lock()
		rep.Problems = append(rep.Problems, p)
		mu.Unlock()
	}
	for _, e := range sets {
		if len(cfg.Sets) > 0 && !slices.Contains(cfg.Sets, e.Set) {
			continue
		}
		as := AuditSet{Set: e.Set, ID: e.ID}
		mdata, err := get(route.ManifestURL(base, e.Set, e.ID, false), manifest.MaxDecodedBytes)
		var msig []byte
		if err == nil {
			msig, err = get(route.ManifestURL(base, e.Set, e.ID, true), sign.MaxSignatureBytes)
		}
		if err == nil && digest.Sum(mdata) != e.Manifest {
			err = fmt.Errorf("manifest: %w", &digest.MismatchError{Want: e.Manifest, Got: digest.Sum(mdata)})
		}
		var m *manifest.Manifest
		if err == nil {
			m, err = manifest.Open(mdata, msig, cfg.Verifier, now)
			if errors.Is(err, manifest.ErrExpired) && m != nil {
				as.Expired, err = true, nil
			}
		}
		if err == nil && (m.Set != e.Set || m.ID != e.ID) {
			err = fmt.Errorf("%w: manifest names %s %s", manifest.ErrMismatch, m.Set, m.ID)
		}
		if err != nil {
			problem(AuditProblem{Set: e.Set, ID: e.ID, Err: err})
			rep.Sets = append(rep.Sets, as)
			continue
		}
		as.Files = len(m.Entries)
		entries := m.Entries
		if cfg.Sample > 0 && cfg.Sample < len(entries) {
			entries = slices.Clone(entries)
			rand.Shuffle(len(entries), func(i, j int) { entries[i], entries[j] = entries[j], entries[i] })
			entries = entries[:cfg.Sample]
		}
		as.Checked = len(entries)
		jobs := cfg.Jobs
		if jobs <= 0 {
			jobs = 4
		}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(jobs)
		for _, en := range entries {
			g.Go(func() error {
				if err := auditFile(gctx, hc, route.FileURL(base, e.Set, en.Path), en); err != nil {
					problem(AuditProblem{Set: e.Set, ID: e.ID, Path: en.Path, Err: err})
				}
				return gctx.Err()
			})
		}
		if err := g.Wait(); err != nil {
			return rep, err
		}
		rep.Sets = append(rep.Sets, as)
	}
	slices.SortFunc(rep.Problems, func(a, b AuditProblem) int {
		return strings.Compare(a.Set+"\x00"+a.Path, b.Set+"\x00"+b.Path)
	})
	return rep, nil
}

// auditFile fetches one set file and compares it with its entry.
func auditFile(ctx context.Context, hc *http.Client, u string, e manifest.Entry) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	_, err = io.Copy(io.Discard, digest.NewVerifier(resp.Body, e.SHA256, e.Size))
	return err
}
