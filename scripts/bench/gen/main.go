// Command gen drives internal/sampleset from scripts: it writes a sample
// FreeBSD-style repository or a synthetic benchmark tree, and changes one
// the way a rebuild does.
//
//	gen repo   -dir D [-seed S] [-packages N] [-bytes SIZE] [-hashed]
//	gen tree   -dir D [-seed S] [-files N] [-bytes SIZE] [-subdir All] [-equal]
//	gen mutate -dir D [-seed S] [-fraction F]
//	gen bump   -dir D [-seed S] [-count N]
//
// SIZE takes a KiB, MiB or GiB suffix. Each prints one JSON object on
// stdout: the files and bytes written or changed, and their paths.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/pkgcdn/pkgcdn/internal/sampleset"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// byteSize is a flag.Value for sizes like 3GiB.
type byteSize int64

func (b *byteSize) String() string { return strconv.FormatInt(int64(*b), 10) }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	*b = byteSize(n)
	return err
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", sampleset.GiB}, {"MiB", sampleset.MiB}, {"KiB", sampleset.KiB}, {"G", sampleset.GiB}, {"M", sampleset.MiB}, {"K", sampleset.KiB}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(n * float64(mult)), nil
}

type output struct {
	Files int      `json:"files"`
	Bytes int64    `json:"bytes"`
	Paths []string `json:"paths,omitempty"` // repo: every package; mutate, bump: what changed
}

// run runs one gen command and writes its JSON result to stdout.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: gen repo|tree|mutate|bump -dir DIR [flags]: %w", flag.ErrHelp)
	}
	cmd := args[0]
	fs := flag.NewFlagSet("gen "+cmd, flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write or change (required)")
	seed := fs.Uint64("seed", 1, "random seed: equal seeds give equal bytes")
	var bytes byteSize
	fs.Var(&bytes, "bytes", "total size (repo: of packages, default 48MiB; tree: exactly, default 3GiB)")
	packages := fs.Int("packages", 0, "repo: number of packages (default 200)")
	hashed := fs.Bool("hashed", false, "repo: also write All/Hashed/<name>-<ver>~<hash>.pkg")
	files := fs.Int("files", 0, "tree: number of files (default 30000)")
	subdir := fs.String("subdir", "", "tree: directory under -dir for the files (default All)")
	equal := fs.Bool("equal", false, "tree: give every file the same size")
	fraction := fs.Float64("fraction", 0.05, "mutate: fraction of files to change")
	count := fs.Int("count", 5, "bump: number of packages to move to a new version")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("-dir is required: %w", flag.ErrHelp)
	}
	var out output
	switch cmd {
	case "repo":
		pkgs, st, err := sampleset.Repo(*dir, sampleset.RepoConfig{Seed: *seed, Packages: *packages, TotalBytes: int64(bytes), Hashed: *hashed})
		if err != nil {
			return err
		}
		out.Files, out.Bytes = st.Files, st.Bytes
		for _, p := range pkgs {
			out.Paths = append(out.Paths, p.RepoPath)
		}
	case "tree":
		st, err := sampleset.Tree(ctx, *dir, sampleset.TreeConfig{Seed: *seed, Files: *files, TotalBytes: int64(bytes), Dir: *subdir, EqualSizes: *equal})
		if err != nil {
			return err
		}
		out.Files, out.Bytes = st.Files, st.Bytes
	case "mutate":
		changed, st, err := sampleset.Mutate(*dir, *fraction, *seed)
		if err != nil {
			return err
		}
		out.Files, out.Bytes, out.Paths = st.Files, st.Bytes, changed
	case "bump":
		changes, st, err := sampleset.BumpVersions(*dir, *count, *seed)
		if err != nil {
			return err
		}
		out.Files, out.Bytes = st.Files, st.Bytes
		for _, c := range changes {
			out.Paths = append(out.Paths, c.NewPath)
		}
	default:
		return fmt.Errorf("unknown command %q: %w", cmd, flag.ErrHelp)
	}
	return json.NewEncoder(stdout).Encode(out)
}
