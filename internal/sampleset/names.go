package sampleset

import (
	"fmt"
	"math/rand/v2"
)

var categories = []string{
	"archivers", "databases", "devel", "editors", "ftp", "graphics", "lang",
	"mail", "math", "net", "security", "shells", "sysutils", "textproc", "www", "x11",
}

var words = []string{
	"curl", "zstd", "openssl", "bash", "vim", "git", "perl", "python", "ruby",
	"nginx", "sqlite", "postgres", "redis", "gettext", "expat", "pcre", "icu",
	"libxml", "jpeg", "png", "tiff", "gmp", "mpfr", "readline", "ncurses",
	"gnutls", "nettle", "lzma", "brotli", "harfbuzz", "freetype", "fontconfig",
	"cairo", "pango", "glib", "dbus", "mesa", "llvm", "rust", "go", "node",
	"yaml", "json", "xz", "bzip", "zip", "tmux", "htop", "rsync", "wget",
	"ffmpeg", "lame", "opus", "flac", "ogg", "vorbis", "webp", "heif", "gd",
}

var prefixes = []string{"", "", "", "lib", "py311-", "p5-", "rubygem-", "php83-", "xorg-", "kf6-"}
var suffixes = []string{"", "", "", "", "-devel", "-lite", "2", "-utils", "-doc"}

// special names are always in the repository (when it is big enough):
// "pkg" for Latest/pkg.pkg, and names with "+" to exercise URL escaping.
var special = []string{"pkg", "libsigc++", "gtk+3"}

// packageNames returns n distinct package names, special ones first.
func packageNames(r *rand.Rand, n int) []string {
	seen := make(map[string]bool, n)
	names := make([]string, 0, n)
	for _, s := range special {
		if len(names) < n {
			seen[s] = true
			names = append(names, s)
		}
	}
	for len(names) < n {
		name := prefixes[r.IntN(len(prefixes))] + words[r.IntN(len(words))] + suffixes[r.IntN(len(suffixes))]
		if seen[name] {
			// Past the combinations, number them: still deterministic.
			name = fmt.Sprintf("%s%d", name, len(names))
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	return names
}

// randomVersion returns a FreeBSD-style version: "1.2.3", sometimes with a
// port revision "_1" or an epoch ",1", and for about one package in 40 (and
// always the fourth) a "~" as in "2.0~rc1".
func randomVersion(r *rand.Rand, i int) string {
	v := fmt.Sprintf("%d.%d.%d", r.IntN(20), r.IntN(30), r.IntN(12))
	if i == 3 || r.IntN(40) == 0 {
		v += fmt.Sprintf("~rc%d", 1+r.IntN(3))
	}
	if r.IntN(4) == 0 {
		v += fmt.Sprintf("_%d", 1+r.IntN(5))
	}
	if r.IntN(15) == 0 {
		v += ",1"
	}
	return v
}
