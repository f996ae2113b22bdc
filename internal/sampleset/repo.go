package sampleset

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// RepoConfig configures Repo. The zero value is a 200-package repository
// of about 48 MiB for FreeBSD:14:amd64.
type RepoConfig struct {
	// Seed selects the repository. Equal configs give equal bytes.
	Seed uint64
	// Packages is the number of packages, "pkg" included. If zero, 200.
	Packages int
	// TotalBytes is the approximate total size of the package files. If
	// zero, 48 MiB.
	TotalBytes int64
	// MinBytes and MaxBytes bound one package's payload. If zero, 4 KiB and
	// 4 MiB.
	MinBytes, MaxBytes int64
	// Hashed also writes each package under All/Hashed/<name>-<ver>~<hash>.pkg
	// (the first 10 hex digits of its sha256) and makes that its catalogue
	// path, as `pkg repo --hash` does.
	Hashed bool
	// ABI is the repository's ABI string. If empty, "FreeBSD:14:amd64".
	ABI string
}

func (c RepoConfig) withDefaults() RepoConfig {
	if c.Packages <= 0 {
		c.Packages = 200
	}
	if c.TotalBytes <= 0 {
		c.TotalBytes = 48 * MiB
	}
	if c.MinBytes <= 0 {
		c.MinBytes = 4 * KiB
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 4 * MiB
	}
	if c.ABI == "" {
		c.ABI = "FreeBSD:14:amd64"
	}
	return c
}

// Package is one package of a repository, as its catalogue lists it.
type Package struct {
	Name     string        `json:"name"`
	Origin   string        `json:"origin"`
	Version  string        `json:"version"`
	Comment  string        `json:"comment"`
	ABI      string        `json:"abi"`
	Prefix   string        `json:"prefix"`
	Flatsize int64         `json:"flatsize"`
	Path     string        `json:"path"`     // All/<name>-<version>.pkg
	RepoPath string        `json:"repopath"` // Path, or the Hashed/ name
	Size     int64         `json:"pkgsize"`
	SHA256   digest.SHA256 `json:"sum"`
}

// FileName returns "<name>-<version>.pkg".
func (p Package) FileName() string { return p.Name + "-" + p.Version + ".pkg" }

// Catalogue file names, relative to the repository root.
const (
	MetaConf        = "meta.conf"
	PackagesitePkg  = "packagesite.pkg"
	PackagesiteTzst = "packagesite.tzst"
	DataPkg         = "data.pkg"
	DataTzst        = "data.tzst"
	LatestPkg       = "Latest/pkg.pkg"
)

// pkgTime is the modification time inside every generated archive: a
// constant, so that archives are byte-identical across runs.
var pkgTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Repo writes a FreeBSD-style package repository under root: meta.conf,
// packagesite.pkg and .tzst, data.pkg and .tzst (tar+zstd catalogues),
// All/<name>-<version>.pkg for every package (a tar+zstd archive with
// +COMPACT_MANIFEST, +MANIFEST and an incompressible payload of log-normal
// size), Latest/pkg.pkg, and All/Hashed/ when cfg.Hashed. Names include
// "libsigc++" and "gtk+3", and a few versions contain "~" or ",", so that
// paths exercise URL escaping. It returns the packages sorted by name.
func Repo(root string, cfg RepoConfig) ([]Package, Stats, error) {
	cfg = cfg.withDefaults()
	r := newPCG(cfg.Seed, purposeRepo)
	names := packageNames(r, cfg.Packages)
	sizes := spread(newPCG(cfg.Seed, purposeSizes), cfg.Packages, cfg.TotalBytes, 1.2, cfg.MinBytes, cfg.MaxBytes)
	pkgs := make([]Package, len(names))
	for i, name := range names {
		v := randomVersion(r, i)
		if name == "pkg" {
			v = "2.0.6"
		}
		pkgs[i] = Package{
			Name:     name,
			Origin:   categories[r.IntN(len(categories))] + "/" + strings.TrimSuffix(name, "-devel"),
			Version:  v,
			Comment:  "Sample package " + name,
			ABI:      cfg.ABI,
			Prefix:   "/usr/local",
			Flatsize: sizes[i],
		}
	}
	var st Stats
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return nil, Stats{}, fmt.Errorf("repo: %w", err)
	}
	defer enc.Close()
	for i := range pkgs {
		if err := writePackage(root, &pkgs[i], cfg, enc, newChaCha(cfg.Seed, purposeRepoData, uint64(i)), &st); err != nil {
			return nil, Stats{}, fmt.Errorf("repo: %w", err)
		}
	}
	slices.SortFunc(pkgs, func(a, b Package) int { return strings.Compare(a.Name, b.Name) })
	if err := writeCatalogue(root, pkgs, enc, &st); err != nil {
		return nil, Stats{}, fmt.Errorf("repo: %w", err)
	}
	return pkgs, st, nil
}

// writePackage builds p's archive with a payload of p.Flatsize bytes from
// src, fills in its Path, RepoPath, Size and SHA256, and writes it to every
// path it has (All/, Hashed/, Latest/ for "pkg").
func writePackage(root string, p *Package, cfg RepoConfig, enc *zstd.Encoder, src filler, st *Stats) error {
	payload := make([]byte, p.Flatsize)
	_, _ = src.Read(payload) // ChaCha8.Read never fails
	manifest, err := json.Marshal(map[string]any{
		"name": p.Name, "origin": p.Origin, "version": p.Version, "comment": p.Comment,
		"abi": p.ABI, "prefix": p.Prefix, "flatsize": p.Flatsize, "maintainer": "ports@FreeBSD.org",
		"www": "https://www.freebsd.org/", "desc": "A generated package for pkgcdn tests.",
	})
	if err != nil {
		return err
	}
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, m := range []struct {
		name string
		data []byte
	}{
		{"+COMPACT_MANIFEST", manifest},
		{"+MANIFEST", manifest},
		{"/usr/local/share/" + p.Name + "/payload.bin", payload},
	} {
		hdr := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), ModTime: pkgTime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(m.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	file := enc.EncodeAll(raw.Bytes(), nil)
	p.Size = int64(len(file))
	p.SHA256 = digest.Sum(file)
	p.Path = "All/" + p.FileName()
	p.RepoPath = p.Path
	paths := []string{p.Path}
	if cfg.Hashed {
		p.RepoPath = "All/Hashed/" + p.Name + "-" + p.Version + "~" + p.SHA256.String()[:10] + ".pkg"
		paths = append(paths, p.RepoPath)
	}
	if p.Name == "pkg" {
		paths = append(paths, LatestPkg)
	}
	for _, rel := range paths {
		if err := writeFile(root, rel, file, st); err != nil {
			return err
		}
	}
	return nil
}

// writeFile writes data to root/rel, creating directories, and counts it.
func writeFile(root, rel string, data []byte, st *Stats) error {
	name := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return err
	}
	st.Files++
	st.Bytes += int64(len(data))
	return nil
}

const metaConf = `version = 2;
packing_format = "tzst";
manifests = "packagesite.yaml";
data = "data";
filesite = "filesite.yaml";
manifests_archive = "packagesite";
filesite_archive = "filesite";
data_archive = "data";
`

// writeCatalogue writes meta.conf and the packagesite and data archives
// listing pkgs (sorted by name): one JSON object per line in
// packagesite.yaml, and {"groups":[],"packages":[...]} in data.
func writeCatalogue(root string, pkgs []Package, enc *zstd.Encoder, st *Stats) error {
	var site bytes.Buffer
	for _, p := range pkgs {
		line, err := json.Marshal(p)
		if err != nil {
			return err
		}
		site.Write(line)
		site.WriteByte('\n')
	}
	data, err := json.Marshal(struct {
		Groups   []string  `json:"groups"`
		Packages []Package `json:"packages"`
	}{[]string{}, pkgs})
	if err != nil {
		return err
	}
	siteArchive, err := tarZstd(enc, "packagesite.yaml", site.Bytes())
	if err != nil {
		return err
	}
	dataArchive, err := tarZstd(enc, "data", data)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		rel  string
		data []byte
	}{
		{MetaConf, []byte(metaConf)},
		{PackagesitePkg, siteArchive}, {PackagesiteTzst, siteArchive},
		{DataPkg, dataArchive}, {DataTzst, dataArchive},
	} {
		if err := writeFile(root, f.rel, f.data, st); err != nil {
			return err
		}
	}
	return nil
}

// tarZstd returns a zstd-compressed tar archive holding one file.
func tarZstd(enc *zstd.Encoder, name string, data []byte) ([]byte, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: pkgTime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return enc.EncodeAll(raw.Bytes(), nil), nil
}

// ReadCatalogue reads the packages listed in root/packagesite.pkg.
func ReadCatalogue(root string) ([]Package, error) {
	f, err := os.Open(filepath.Join(root, PackagesitePkg))
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read catalogue: no packagesite.yaml in %s", PackagesitePkg)
		}
		if err != nil {
			return nil, fmt.Errorf("read catalogue: %w", err)
		}
		if hdr.Name != "packagesite.yaml" {
			continue
		}
		var pkgs []Package
		sc := bufio.NewScanner(tr)
		sc.Buffer(make([]byte, 64*KiB), MiB)
		for sc.Scan() {
			var p Package
			if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
				return nil, fmt.Errorf("read catalogue: %w", err)
			}
			pkgs = append(pkgs, p)
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read catalogue: %w", err)
		}
		return pkgs, nil
	}
}

// Change is one package BumpVersions moved to a new version.
type Change struct {
	Name                   string
	OldPath, NewPath       string // catalogue paths (RepoPath)
	OldVersion, NewVersion string
}

// BumpVersions moves n packages of the repository at root (written by
// Repo) to a new version, as a daily rebuild does: for each, chosen by seed,
// the old files are removed, a new package with new bytes is written under
// the new version's name, and the catalogues are rewritten. "pkg" is never
// chosen so that Latest/pkg.pkg stays put. The version bump adds or
// increments the port revision ("1.2" → "1.2_1" → "1.2_2"). It returns the
// changes sorted by name and what was written (new packages and catalogues).
func BumpVersions(root string, n int, seed uint64) ([]Change, Stats, error) {
	pkgs, err := ReadCatalogue(root)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("bump versions: %w", err)
	}
	var candidates []int
	for i, p := range pkgs {
		if p.Name != "pkg" {
			candidates = append(candidates, i)
		}
	}
	if n > len(candidates) {
		return nil, Stats{}, fmt.Errorf("bump versions: %d packages asked, %d can change", n, len(candidates))
	}
	r := newPCG(seed, purposeBumpPick)
	r.Shuffle(len(candidates), func(i, j int) { candidates[i], candidates[j] = candidates[j], candidates[i] })
	chosen := candidates[:n]
	slices.Sort(chosen)

	enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		return nil, Stats{}, fmt.Errorf("bump versions: %w", err)
	}
	defer enc.Close()
	var st Stats
	changes := make([]Change, 0, n)
	for _, i := range chosen {
		p := &pkgs[i]
		c := Change{Name: p.Name, OldPath: p.RepoPath, OldVersion: p.Version}
		for _, rel := range []string{p.Path, p.RepoPath} {
			if err := os.Remove(filepath.Join(root, filepath.FromSlash(rel))); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, Stats{}, fmt.Errorf("bump versions: %w", err)
			}
		}
		p.Version = bumpRevision(p.Version)
		cfg := RepoConfig{Hashed: p.RepoPath != p.Path}
		if err := writePackage(root, p, cfg, enc, newChaCha(seed, purposeBumpData, uint64(i)), &st); err != nil {
			return nil, Stats{}, fmt.Errorf("bump versions: %w", err)
		}
		c.NewPath, c.NewVersion = p.RepoPath, p.Version
		changes = append(changes, c)
	}
	if err := writeCatalogue(root, pkgs, enc, &st); err != nil {
		return nil, Stats{}, fmt.Errorf("bump versions: %w", err)
	}
	return changes, st, nil
}

// bumpRevision adds or increments the port revision of a FreeBSD version
// string, keeping its epoch: "1.2" → "1.2_1", "1.2_1,1" → "1.2_2,1".
func bumpRevision(v string) string {
	base, epoch, hasEpoch := strings.Cut(v, ",")
	ver, rev, hasRev := strings.Cut(base, "_")
	n := 0
	if hasRev {
		n, _ = strconv.Atoi(rev) // a non-number revision restarts at 1
	}
	out := ver + "_" + strconv.Itoa(n+1)
	if hasEpoch {
		out += "," + epoch
	}
	return out
}
