package sampleset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sync/errgroup"
)

// TreeConfig configures Tree. The zero value is the benchmark's standard
// set: 30,000 files, 3 GiB, under All/.
type TreeConfig struct {
	// Seed selects the tree. Equal seeds give equal trees.
	Seed uint64
	// Files is the number of files. If zero, 30,000.
	Files int
	// TotalBytes is the sum of the file sizes, exactly. If zero, 3 GiB.
	TotalBytes int64
	// Dir is the directory under the root that holds the files. If empty, "All".
	Dir string
	// Workers is the number of files written in parallel. If zero, GOMAXPROCS.
	Workers int
	// BufferBytes is the write buffer of each worker. If zero, 1 MiB.
	BufferBytes int
	// EqualSizes gives every file the same size (TotalBytes / Files, the
	// remainder spread one byte at a time) instead of log-normal sizes.
	EqualSizes bool
}

func (c TreeConfig) withDefaults() TreeConfig {
	if c.Files == 0 {
		c.Files = 30000
	}
	if c.TotalBytes == 0 {
		c.TotalBytes = 3 * GiB
	}
	if c.Dir == "" {
		c.Dir = "All"
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.BufferBytes <= 0 {
		c.BufferBytes = MiB
	}
	return c
}

// TreeFile is one file of a synthetic tree.
type TreeFile struct {
	Path string // slash-separated, relative to the root
	Size int64
}

// TreeFiles returns the files Tree writes for cfg, in order, without
// writing anything. Sizes are log-normal and sum to TotalBytes exactly; for
// the default set the mean is 105 KiB, the median about 35 KiB and the
// 99th percentile about 1 MiB, like a FreeBSD package set.
func TreeFiles(cfg TreeConfig) []TreeFile {
	cfg = cfg.withDefaults()
	sigma := 1.5
	if cfg.EqualSizes {
		sigma = 0
	}
	sizes := spread(newPCG(cfg.Seed, purposeSizes), cfg.Files, cfg.TotalBytes, sigma, 0, 0)
	files := make([]TreeFile, cfg.Files)
	for i, s := range sizes {
		files[i] = TreeFile{Path: fmt.Sprintf("%s/pkg%06d-1.0.pkg", cfg.Dir, i), Size: s}
	}
	return files
}

// Tree writes the synthetic tree of cfg under root, creating root if needed
// and overwriting files of the same names. Each file's bytes come from a
// ChaCha8 stream keyed by (Seed, its index): no two files share content,
// so content-addressed storage cannot deduplicate them.
func Tree(ctx context.Context, root string, cfg TreeConfig) (Stats, error) {
	cfg = cfg.withDefaults()
	files := TreeFiles(cfg)
	if err := os.MkdirAll(filepath.Join(root, filepath.FromSlash(cfg.Dir)), 0o755); err != nil {
		return Stats{}, fmt.Errorf("tree: %w", err)
	}
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan int)
	g.Go(func() error {
		defer close(next)
		for i := range files {
			select {
			case next <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range cfg.Workers {
		g.Go(func() error {
			buf := make([]byte, cfg.BufferBytes)
			for i := range next {
				f := files[i]
				name := filepath.Join(root, filepath.FromSlash(f.Path))
				if err := writeRandom(name, f.Size, newChaCha(cfg.Seed, purposeTreeData, uint64(i)), buf); err != nil {
					return fmt.Errorf("tree: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Stats{}, err
	}
	var st Stats
	for _, f := range files {
		st.Files++
		st.Bytes += f.Size
	}
	return st, nil
}

// filler is a source of random bytes (a *rand.ChaCha8).
type filler interface {
	Read(p []byte) (int, error)
}

// writeRandom writes size bytes of src to name, truncating it, in chunks of buf.
func writeRandom(name string, size int64, src filler, buf []byte) (err error) {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	for left := size; left > 0; {
		n := int(min(left, int64(len(buf))))
		_, _ = src.Read(buf[:n]) // ChaCha8.Read never fails
		if _, err := f.Write(buf[:n]); err != nil {
			return err
		}
		left -= int64(n)
	}
	return nil
}
