//go:build !unix

package objcache

// mapArena allocates the arena on the heap where anonymous mappings are
// not at hand.
func mapArena(n int) ([]byte, error) { return make([]byte, n), nil }

// unmapArena leaves the arena to the garbage collector.
func unmapArena([]byte) {}
