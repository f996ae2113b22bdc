//go:build !unix

package edge

// mapArena allocates the arena on the Go heap where there is no mmap.
func mapArena(n int) ([]byte, error) { return make([]byte, n), nil }

// unmapArena leaves a heap arena to the garbage collector.
func unmapArena([]byte) {}
