// Package relpath validates the path of a file inside a package set
// ("All/curl-8.10.pkg"): the one check every path from a source tree, a
// manifest or a request passes before it is joined to a directory.
package relpath

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLen bounds a path in bytes (PATH_MAX-like, well above any package name).
const MaxLen = 1024

// Reserved is the first segment reserved for pkgcdn's own files in a set
// directory (the manifest) and in the URL space.
const Reserved = ".pkgcdn"

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid path")

// Validate checks that p is a clean, relative, slash-separated path that
// cannot leave the directory it is joined to: not empty, at most MaxLen bytes,
// valid UTF-8 without control characters or backslashes, no empty, "." or ".."
// segment, not absolute, and not under Reserved (in any letter case). Spaces,
// "~", "$" and other printable characters are allowed: package names use them.
func Validate(p string) error {
	if p == "" {
		return fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(p) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLen)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalid, p)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w %q: control character or backslash", ErrInvalid, p)
		}
	}
	if p[0] == '/' {
		return fmt.Errorf("%w %q: absolute", ErrInvalid, p)
	}
	for i, rest, more := 0, p, true; more; i++ {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		switch {
		case seg == "":
			return fmt.Errorf("%w %q: empty segment", ErrInvalid, p)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w %q: %q segment", ErrInvalid, p, seg)
		case i == 0 && strings.EqualFold(seg, Reserved):
			// Any case: on a case-insensitive file system ".PKGCDN" is ".pkgcdn".
			return fmt.Errorf("%w %q: %s is reserved", ErrInvalid, p, Reserved)
		}
	}
	return nil
}
