// Package sampleset generates package trees deterministically from a seed:
// a realistic FreeBSD-style repository for the demo and end-to-end tests
// (Repo), a large synthetic tree for benchmarks (Tree), and the changes
// between two builds (Mutate, BumpVersions).
//
// The same Config and seed always give the same file names, sizes and bytes,
// on every platform, so a benchmark or a test can name what it expects.
package sampleset

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// KiB, MiB and GiB are byte counts.
const (
	KiB = 1 << 10
	MiB = 1 << 20
	GiB = 1 << 30
)

// Stats counts what a generator wrote or changed.
type Stats struct {
	Files int   // regular files
	Bytes int64 // their total size
}

// Purposes keep the random streams of different jobs apart, so that, say,
// the bytes Mutate writes for file i never equal the bytes Tree wrote there.
const (
	purposeSizes uint64 = iota + 1
	purposeTreeData
	purposeMutatePick
	purposeMutateData
	purposeRepo
	purposeRepoData
	purposeBumpPick
	purposeBumpData
)

// newPCG returns a small fast generator for decisions (sizes, picks, names).
func newPCG(seed, purpose uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, purpose*0x9e3779b97f4a7c15+1))
}

// newChaCha returns the byte stream of one file: independent for every
// (seed, purpose, index), so files can be written in any order, in parallel.
func newChaCha(seed, purpose, index uint64) *rand.ChaCha8 {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[0:], seed)
	binary.LittleEndian.PutUint64(key[8:], purpose)
	binary.LittleEndian.PutUint64(key[16:], index)
	binary.LittleEndian.PutUint64(key[24:], 0x706b6763646e) // "pkgcdn"
	return rand.NewChaCha8(key)
}

// spread divides total bytes among n files with log-normal weights (sigma
// is the spread of the logarithm), then clamps each size to [lo, hi] when
// hi > 0. Without clamping the sizes sum to total exactly.
func spread(r *rand.Rand, n int, total int64, sigma float64, lo, hi int64) []int64 {
	sizes := make([]int64, n)
	if n == 0 {
		return sizes
	}
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = math.Exp(sigma * r.NormFloat64())
		sum += w[i]
	}
	var used int64
	for i := range w {
		sizes[i] = int64(float64(total) * w[i] / sum)
		used += sizes[i]
	}
	// Hand the rounding remainder out one byte at a time.
	for i := 0; used < total; i = (i + 1) % n {
		sizes[i]++
		used++
	}
	if hi > 0 {
		for i := range sizes {
			sizes[i] = min(max(sizes[i], lo), hi)
		}
	}
	return sizes
}
