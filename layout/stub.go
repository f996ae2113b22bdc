package layout

import (
	"context"
	"errors"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

var errTODO = errors.New("not implemented")

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
