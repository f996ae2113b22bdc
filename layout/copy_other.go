//go:build !linux && !freebsd

package layout

import (
	"os"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// defaultCopyMethods: no in-kernel copy here; PutFile copies in user space.
var defaultCopyMethods []copyMethod

// copyFileRange and copyFileRangeHashing have no kernel copy to offer here.
func copyFileRange(dst, src *os.File, d digest.SHA256, size int64) (bool, error) { return false, nil }

func copyFileRangeHashing(dst, src *os.File, d digest.SHA256, size int64) (bool, error) {
	return false, nil
}
