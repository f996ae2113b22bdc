//go:build unix

package objcache

import "syscall"

// mapArena maps n bytes of anonymous memory: outside the Go heap, and
// resident only once touched.
func mapArena(n int) ([]byte, error) {
	return syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
}

// unmapArena releases an arena once its cache is unreachable.
func unmapArena(b []byte) { _ = syscall.Munmap(b) } // a failure can only leak it
