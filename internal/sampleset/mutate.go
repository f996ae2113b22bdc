package sampleset

import (
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// Files lists the regular files under root as sorted slash-separated paths
// relative to root, with their total size. Symlinks and other non-regular
// files are skipped.
func Files(root string) ([]string, Stats, error) {
	var paths []string
	var st Stats
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		paths = append(paths, filepath.ToSlash(rel))
		st.Files++
		st.Bytes += info.Size()
		return nil
	})
	if err != nil {
		return nil, Stats{}, fmt.Errorf("list %s: %w", root, err)
	}
	slices.Sort(paths)
	return paths, st, nil
}

// Mutate gives a fraction (0 to 1) of the regular files under root new
// bytes, keeping their names and sizes: what a rebuild does to packages
// whose version did not change. round(fraction × files) files are chosen by
// seed; the same tree, fraction and seed always change the same files to
// the same bytes. It returns the changed files, sorted, and their count and
// total size.
//
// Each file is replaced by a new one (temp file, rename) rather than
// rewritten in place, as a build tool writes its output: a publisher that
// hardlinked the old file into its store keeps the old bytes intact.
func Mutate(root string, fraction float64, seed uint64) ([]string, Stats, error) {
	if !(fraction >= 0 && fraction <= 1) {
		return nil, Stats{}, fmt.Errorf("mutate: fraction %v not in [0, 1]", fraction)
	}
	paths, _, err := Files(root)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("mutate: %w", err)
	}
	k := int(math.Round(fraction * float64(len(paths))))
	// A partial Fisher-Yates shuffle picks k distinct indexes.
	r := newPCG(seed, purposeMutatePick)
	idx := make([]int, len(paths))
	for i := range idx {
		idx[i] = i
	}
	for i := range k {
		j := i + r.IntN(len(idx)-i)
		idx[i], idx[j] = idx[j], idx[i]
	}
	chosen := idx[:k]
	slices.Sort(chosen)

	buf := make([]byte, MiB)
	var st Stats
	changed := make([]string, 0, k)
	for _, i := range chosen {
		name := filepath.Join(root, filepath.FromSlash(paths[i]))
		info, err := os.Stat(name)
		if err != nil {
			return changed, st, fmt.Errorf("mutate: %w", err)
		}
		if err := replaceRandom(name, info.Size(), newChaCha(seed, purposeMutateData, uint64(i)), buf); err != nil {
			return changed, st, fmt.Errorf("mutate: %w", err)
		}
		changed = append(changed, paths[i])
		st.Files++
		st.Bytes += info.Size()
	}
	return changed, st, nil
}

// replaceRandom writes size random bytes to a temp file next to name and
// renames it over name.
func replaceRandom(name string, size int64, src filler, buf []byte) error {
	tmp := filepath.Join(filepath.Dir(name), ".sampleset-"+filepath.Base(name))
	if err := writeRandom(tmp, size, src, buf); err != nil {
		_ = os.Remove(tmp) // best effort; the write error is what matters
		return err
	}
	return os.Rename(tmp, name)
}
