//go:build linux

package cache

import (
	"encoding/hex"
	"os"
	"strings"
)

// readBootID reads the kernel's random boot ID, new at every boot.
func readBootID() (b bootID) {
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return b // unknown: after a crash, dirty entries are removed
	}
	s := strings.ReplaceAll(strings.TrimSpace(string(raw)), "-", "")
	if len(s) != 2*len(b) {
		return bootID{}
	}
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return bootID{}
	}
	return b
}
