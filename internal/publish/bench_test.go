package publish

import (
	cryptosha256 "crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// Benchmark trees stay modest (the 30,000-file / 3 GiB comparison with
// rsync is scripts/bench, calling the pkgpublish binary).
const (
	benchFiles    = 400
	benchFileSize = 128 << 10 // 50 MiB in all
)

// benchTree writes benchFiles files of benchFileSize pseudo-random bytes,
// with mtimes old enough to be cached.
func benchTree(b *testing.B) (string, int64) {
	b.Helper()
	dir := b.TempDir()
	buf := make([]byte, benchFileSize)
	old := time.Now().Add(-time.Hour)
	for i := range benchFiles {
		fillBench(buf, i, 0)
		p := filepath.Join(dir, fmt.Sprintf("All/d%02d/p%05d.pkg", i%50, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			b.Fatal(err)
		}
	}
	return dir, benchFiles * benchFileSize
}

func fillBench(buf []byte, file, gen int) {
	x := uint64(file)*0x9e3779b97f4a7c15 + uint64(gen)*0xbf58476d1ce4e5b9 + 1
	for i := 0; i+8 <= len(buf); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for k := range 8 {
			buf[i+k] = byte(x >> (8 * k))
		}
	}
}

// BenchmarkHashTree hashes a tree with one worker and with GOMAXPROCS
// workers (no cache): MB/s is the hashing throughput of a first publish.
func BenchmarkHashTree(b *testing.B) {
	src, total := benchTree(b)
	for _, workers := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			b.SetBytes(total)
			for b.Loop() {
				files, err := Scan(b.Context(), src)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Hash(b.Context(), files, HashConfig{Workers: workers}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSHA256 compares sha256-simd (internal/digest) with crypto/sha256
// on 1 MiB blocks: MB/s per core.
func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	fillBench(buf, 1, 1)
	b.Run("sha256-simd", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		h := digest.New()
		for b.Loop() {
			h.Reset()
			h.Write(buf)
			_ = h.Sum(nil)
		}
	})
	b.Run("crypto-sha256", func(b *testing.B) {
		b.SetBytes(int64(len(buf)))
		h := cryptosha256.New()
		for b.Loop() {
			h.Reset()
			h.Write(buf)
			_ = h.Sum(nil)
		}
	})
}

// BenchmarkPublishLocal publishes a tree into a root: the first publish
// (new root each time), a republish after 5% of the files changed, and an
// unchanged republish (hash cache: no file is read).
func BenchmarkPublishLocal(b *testing.B) {
	src, total := benchTree(b)
	s, _ := newKey(b)
	b.Run("first", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			cfg := Config{Set: testSet, Signer: s}
			if _, err := PublishLocal(b.Context(), cfg, newRoot(b), src); err != nil {
				b.Fatal(err)
			}
		}
	})
	root := newRoot(b)
	cfg := Config{Set: testSet, Signer: s, HashCache: filepath.Join(b.TempDir(), "hc")}
	if _, err := PublishLocal(b.Context(), cfg, root, src); err != nil {
		b.Fatal(err)
	}
	gen := 0 // across runs of the sub-benchmark: every generation is new content
	b.Run("changed5pct", func(b *testing.B) {
		buf := make([]byte, benchFileSize)
		for b.Loop() {
			b.StopTimer()
			gen++
			old := time.Now().Add(-time.Hour + time.Duration(gen)*time.Millisecond)
			for i := 0; i < benchFiles; i += 20 {
				fillBench(buf, i, gen)
				p := filepath.Join(src, fmt.Sprintf("All/d%02d/p%05d.pkg", i%50, i))
				if err := os.WriteFile(p, buf, 0o644); err != nil {
					b.Fatal(err)
				}
				if err := os.Chtimes(p, old, old); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			res, err := PublishLocal(b.Context(), cfg, root, src)
			if err != nil {
				b.Fatal(err)
			}
			if res.Sent != benchFiles/20 {
				b.Fatalf("sent %d objects, want %d", res.Sent, benchFiles/20)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			res, err := PublishLocal(b.Context(), cfg, root, src)
			if err != nil {
				b.Fatal(err)
			}
			if res.New || res.Hash.Bytes != 0 {
				b.Fatalf("unchanged republish: %+v", res)
			}
		}
	})
}

// BenchmarkPublishRemote publishes the benchmark tree to the real master
// handler (internal/origin) over loopback HTTP: first publish (new master
// each time), 5% changed, unchanged.
func BenchmarkPublishRemote(b *testing.B) {
	src, total := benchTree(b)
	s, pub := newKey(b)
	b.Run("first", func(b *testing.B) {
		b.SetBytes(total)
		for b.Loop() {
			_, ts := newOrigin(b, pub, "tok")
			cfg := Config{Set: testSet, Signer: s}
			if _, err := PublishRemote(b.Context(), cfg, newClient(b, ts.URL, "tok"), src); err != nil {
				b.Fatal(err)
			}
		}
	})
	_, ts := newOrigin(b, pub, "tok")
	c := newClient(b, ts.URL, "tok")
	cfg := Config{Set: testSet, Signer: s, HashCache: filepath.Join(b.TempDir(), "hc")}
	if _, err := PublishRemote(b.Context(), cfg, c, src); err != nil {
		b.Fatal(err)
	}
	gen := 1000 // not the generations BenchmarkPublishLocal used
	b.Run("changed5pct", func(b *testing.B) {
		buf := make([]byte, benchFileSize)
		for b.Loop() {
			b.StopTimer()
			gen++
			old := time.Now().Add(-time.Hour + time.Duration(gen)*time.Millisecond)
			for i := 0; i < benchFiles; i += 20 {
				fillBench(buf, i, gen)
				p := filepath.Join(src, fmt.Sprintf("All/d%02d/p%05d.pkg", i%50, i))
				if err := os.WriteFile(p, buf, 0o644); err != nil {
					b.Fatal(err)
				}
				if err := os.Chtimes(p, old, old); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			res, err := PublishRemote(b.Context(), cfg, c, src)
			if err != nil {
				b.Fatal(err)
			}
			if res.Sent != benchFiles/20 {
				b.Fatalf("sent %d objects, want %d", res.Sent, benchFiles/20)
			}
		}
	})
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			res, err := PublishRemote(b.Context(), cfg, c, src)
			if err != nil {
				b.Fatal(err)
			}
			if res.New || res.Hash.Bytes != 0 {
				b.Fatalf("unchanged republish: %+v", res)
			}
		}
	})
}
