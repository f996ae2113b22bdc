//go:build !unix

package layout

import (
	"errors"
	"os"
)

var errNoLock = errors.New("file locking not supported on this system")

func tryLock(f *os.File) (bool, error) { return false, errNoLock }

func unlockFile(f *os.File) error { return errNoLock }
