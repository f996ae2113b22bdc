package cache

// bootID names one boot of the machine: equal IDs mean the kernel's page
// cache of the earlier run is still the one we read, so whatever it wrote
// is intact even if not durable. The zero value means unknown: never equal
// to trust.
type bootID [16]byte

func (b bootID) zero() bool { return b == bootID{} }

// key spells b in the key field of an index record.
func (b bootID) key() (k [32]byte) {
	copy(k[:], b[:])
	return k
}

// currentBoot returns this boot's ID (Config.BootID's if set), or zero if
// the system does not tell.
func (c *Cache) currentBoot() bootID {
	if c.cfg.BootID != nil {
		return c.cfg.BootID()
	}
	return readBootID()
}
