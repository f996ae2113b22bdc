//go:build unix && !linux

package layout

import "errors"

// setDirect reports that direct writes are not used here: only Linux's
// were measured (see directMin).
func (f *rawFile) setDirect(bool) error { return errors.ErrUnsupported }
