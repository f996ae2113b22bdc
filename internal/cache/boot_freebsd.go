//go:build freebsd

package cache

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// readBootID derives an ID from kern.boottime. It moves when the clock is
// stepped, which only makes a restart after a crash more careful (dirty
// entries are removed as after a reboot), never less.
func readBootID() (b bootID) {
	tv, err := unix.SysctlTimeval("kern.boottime")
	if err != nil {
		return b
	}
	binary.BigEndian.PutUint64(b[:8], uint64(tv.Sec))
	binary.BigEndian.PutUint64(b[8:], uint64(tv.Usec))
	b[0] |= 0x80 // never zero
	return b
}
