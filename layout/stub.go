package layout

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

var errTODO = errors.New("not implemented")

// HasObject reports whether the object with digest d is stored.
func (r *Root) HasObject(d digest.SHA256) (bool, error) { return false, errTODO }

// PutObject stores the object d of size bytes read from src.
func (r *Root) PutObject(d digest.SHA256, size int64, src io.Reader) error { return errTODO }

// PutFile stores the object d of size bytes copied from srcPath.
func (r *Root) PutFile(d digest.SHA256, size int64, srcPath string) error { return errTODO }

// Lock takes the root's exclusive publish lock.
func (r *Root) Lock(ctx context.Context) (unlock func() error, err error) { return nil, errTODO }

// Commit is one set to publish.
type Commit struct {
	Manifest                  *manifest.Manifest
	ManifestData, ManifestSig []byte
	SetsData, SetsSig         []byte
}

// Commit publishes c.
func (r *Root) Commit(ctx context.Context, c Commit, v *sign.Verifier, now time.Time) error {
	return errTODO
}

// Policy says what GC keeps.
type Policy struct {
	Keep  int
	Grace time.Duration
	Now   time.Time
}

// GCReport says what GC removed.
type GCReport struct {
	SetsRemoved    []string
	ObjectsRemoved int
	BytesFreed     int64
	StagingRemoved int
}

// GC removes old sets and unreferenced objects.
func (r *Root) GC(ctx context.Context, p Policy) (GCReport, error) { return GCReport{}, errTODO }

// VerifyReport is the result of Verify.
type VerifyReport struct {
	Set string
	ID  setid.ID
}

// Verify checks a published set.
func (r *Root) Verify(ctx context.Context, set string, id setid.ID, v *sign.Verifier) (*VerifyReport, error) {
	return nil, errTODO
}
