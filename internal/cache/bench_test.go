package cache

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func BenchmarkGetHit(b *testing.B) {
	c := newCache(b, Config{})
	data := randBytes(64<<10, 1)
	key := keyOf(data)
	fillAndRead(b, c, key, specFor(data, staticUpstream(data)))
	c.wg.Wait()
	p := make([]byte, 4<<10)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		o, err := c.Get(key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.ReadAt(p, 4096); err != nil {
			b.Fatal(err)
		}
		o.Close()
	}
}

// BenchmarkStreamFill is one fill of 64 MiB from memory, verified and
// committed, read whole by 8 concurrent readers.
func BenchmarkStreamFill(b *testing.B) {
	c := newCache(b, Config{MaxBytes: 200 << 20})
	const size = 64 << 20
	data := randBytes(size, 2)
	b.SetBytes(size)
	for i := 0; b.Loop(); i++ {
		data[0] = byte(i) // a new object each round
		data[1] = byte(i >> 8)
		u := staticUpstream(data)
		spec := specFor(data, u)
		key := keyOf(data)
		var wg sync.WaitGroup
		for range 8 {
			s, err := c.Fill(key, spec)
			if err != nil {
				b.Fatal(err)
			}
			wg.Go(func() {
				defer s.Close()
				if n, err := io.Copy(io.Discard, s.Reader(0)); err != nil || n != size {
					b.Errorf("read %d bytes: %v", n, err)
				}
			})
		}
		wg.Wait()
		c.wg.Wait()
	}
}

// BenchmarkFillDistinctSmall is scenario (d) of the edge's load test: 32
// clients filling 2,000 distinct 64 KiB objects from an in-memory upstream,
// on the real disk (t.TempDir; PKGCDN_BENCH_DIR picks another file system).
// One op is 2,048 fills read whole, then every commit done, so fills/s is
// what the disk sustains, not what it queues. Commits need no barrier
// (checkpoints are SyncInterval apart, one barrier for all); the
// content-addressed case, the edge's, also writes no Meta sidecar.
func BenchmarkFillDistinctSmall(b *testing.B) {
	for _, ca := range []bool{false, true} {
		name := "sidecar"
		if ca {
			name = "content-addressed"
		}
		b.Run(name, func(b *testing.B) { benchFillDistinct(b, ca) })
	}
}

func benchFillDistinct(b *testing.B, ca bool) {
	dir := b.TempDir()
	if d := os.Getenv("PKGCDN_BENCH_DIR"); d != "" {
		var err error
		if dir, err = os.MkdirTemp(d, "bench"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = os.RemoveAll(dir) })
	}
	c := newCache(b, Config{Dir: dir, MaxBytes: 1 << 30})
	const (
		size    = 64 << 10
		clients = 32
		perOp   = 2048
	)
	base := randBytes(size, 3)
	var seq atomic.Uint64
	b.SetBytes(perOp * size)
	start := time.Now()
	for b.Loop() {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				data := bytes.Clone(base)
				for range perOp / clients {
					binary.BigEndian.PutUint64(data, seq.Add(1))
					spec := specFor(data, staticUpstream(data))
					spec.ContentAddressed = ca
					s, err := c.Fill(keyOf(data), spec)
					if err != nil {
						b.Error(err)
						return
					}
					n, err := io.Copy(io.Discard, s.Reader(0))
					s.Close()
					if err != nil || n != size {
						b.Errorf("read %d bytes: %v", n, err)
						return
					}
				}
			})
		}
		wg.Wait()
		c.wg.Wait() // every commit of this op is done
	}
	b.ReportMetric(float64(b.N*perOp)/time.Since(start).Seconds(), "fills/s")
	if st := c.Stats(); st.DiskErrors != 0 || st.FillErrors != 0 {
		b.Errorf("Stats = %+v", st)
	}
}

// BenchmarkOpen1M times New over a cleanly closed index of 1e6 entries.
// Their files do not exist: a clean New never looks at them.
func BenchmarkOpen1M(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "objects"), 0o755); err != nil {
		b.Fatal(err)
	}
	index := filepath.Join(dir, "index")
	f, err := os.Create(index)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	var rec [recSize]byte
	encodeRecord(&rec, opHeader, []byte(magic), 0)
	w.Write(rec[:])
	for i := range n {
		var k Key
		binary.BigEndian.PutUint64(k[:], uint64(i)*0x9e3779b97f4a7c15)
		binary.BigEndian.PutUint64(k[8:], uint64(i))
		encodeRecord(&rec, opSnap, k[:], 100<<10)
		w.Write(rec[:])
	}
	encodeRecord(&rec, opClean, nil, 0)
	w.Write(rec[:])
	if err := errorsJoin(w.Flush(), f.Close()); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(index)
	b.ReportAllocs()
	for b.Loop() {
		c, err := New(Config{Dir: dir, MaxBytes: 1 << 40, Logger: benchLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if st := c.Stats(); st.Entries != n {
			b.Fatalf("Entries = %d, want %d", st.Entries, n)
		}
		// Undo this run's "open" record instead of a Close, which would
		// rewrite the index.
		c.cancel(nil)
		c.jr.close()
		c.unlock()
		if err := os.Truncate(index, fi.Size()); err != nil {
			b.Fatal(err)
		}
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

var _ = bytes.Equal

func benchLogger() *slog.Logger {
	if os.Getenv("PKGCDN_BENCH_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// BenchmarkOpenAfterCrash10k times New after a crash (no clean mark) with
// 10,000 entries on disk, until its background reconcile, which lists the
// 256 fan-out directories, is done (new-ns/op: New alone). Multiply by 100
// for an estimate at 1e6 entries (the listing is linear).
func BenchmarkOpenAfterCrash10k(b *testing.B) {
	const n = 10_000
	dir := b.TempDir()
	c, err := New(Config{Dir: dir, MaxBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	<-c.reconcileDone // of the empty directory; the files below bypass fills
	data := []byte("x")
	for i := range n {
		var k Key
		binary.BigEndian.PutUint64(k[:], uint64(i)*0x9e3779b97f4a7c15)
		if err := os.WriteFile(c.metaPath(k), []byte(`{"Size":1}`), 0o444); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(c.dataPath(k), data, 0o444); err != nil {
			b.Fatal(err)
		}
		c.mu.Lock()
		c.insertLocked(k, 1)
		c.journalLocked(opAdd, k, 1)
		c.mu.Unlock()
	}
	abandon(c)
	var inNew time.Duration
	for b.Loop() {
		start := time.Now()
		c, err := New(Config{Dir: dir, MaxBytes: 1 << 40, Logger: benchLogger()})
		if err != nil {
			b.Fatal(err)
		}
		inNew += time.Since(start)
		<-c.reconcileDone
		if st := c.Stats(); st.Entries != n {
			b.Fatalf("Entries = %d, want %d", st.Entries, n)
		}
		abandon(c)
	}
	b.ReportMetric(float64(inNew.Nanoseconds())/float64(b.N), "new-ns/op")
}
