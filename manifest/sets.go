package manifest

import (
	"bytes"
	"fmt"

	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// setsComment is the trusted comment of every SETS signature. SETS carries
// no ID of its own: a replayed SETS can only name set IDs that edges already
// refuse as rollbacks, and each manifest it names is signed on its own.
const setsComment = "pkgcdn-sets v1"

// SignSets returns the canonical SETS file for s and its .minisig.
func SignSets(s setid.Sets, signer *sign.Signer) (data, sig []byte) {
	data = s.Bytes()
	return data, signer.Sign(data, setsComment)
}

// OpenSets verifies a SETS file's signature with v and parses it.
func OpenSets(data, sig []byte, v *sign.Verifier) (setid.Sets, error) {
	tc, err := v.Verify(data, sig)
	if err != nil {
		return nil, fmt.Errorf("verify SETS: %w", err)
	}
	if tc != setsComment {
		return nil, fmt.Errorf("%w: SETS trusted comment %q", ErrMismatch, tc)
	}
	return setid.ParseSets(bytes.NewReader(data))
}
