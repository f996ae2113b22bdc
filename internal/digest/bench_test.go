package digest

import (
	"crypto/sha256"
	"hash"
	"testing"

	simd "github.com/minio/sha256-simd"
)

// BenchmarkSHA256 compares the SIMD implementation this package uses with
// the standard library's on 1 MiB buffers (run with -bench SHA256).
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for _, bm := range []struct {
		name string
		new  func() hash.Hash
	}{
		{"sha256-simd", simd.New},
		{"crypto-sha256", sha256.New},
		{"digest.New", New},
	} {
		b.Run(bm.name, func(b *testing.B) {
			h := bm.new()
			var out [Size]byte
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				h.Reset()
				h.Write(buf)
				h.Sum(out[:0])
			}
		})
	}
}
