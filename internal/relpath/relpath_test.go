package relpath

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"package", "All/curl-8.10.pkg", true},
		{"catalogue", "packagesite.pkg", true},
		{"hashed name with tilde", "All/Hashed/curl-8.10~1a2b3c.pkg", true},
		{"dollar", "All/p5-$foo-1.0.pkg", true},
		{"spaces", "All/a b  c.pkg", true},
		{"leading space", " x", true},
		{"trailing dot", "a/b.", true},
		{"dots inside a segment", "a/..b/c..", true},
		{"three dots", "...", true},
		{"UTF-8", "All/café-1.0.pkg", true},
		{"pkgcdn not first", "All/.pkgcdn/x", true},
		{"pkgcdn-like name", ".pkgcdnx/y", true},
		{"hidden file", ".hidden", true},
		{"longest", strings.Repeat("a", MaxLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxLen+1), false},
		{"dot-dot", "..", false},
		{"dot-dot first", "../etc/passwd", false},
		{"dot-dot inside", "All/../../etc/passwd", false},
		{"dot-dot last", "All/..", false},
		{"dot", ".", false},
		{"dot segment", "All/./x", false},
		{"absolute", "/etc/passwd", false},
		{"double leading slash", "//All/x", false},
		{"trailing slash", "All/", false},
		{"double slash", "All//x", false},
		{"NUL", "All/x\x00.pkg", false},
		{"newline", "All/x\n.pkg", false},
		{"carriage return", "All/x\r", false},
		{"tab", "All/\tx", false},
		{"escape", "All/\x1b[31m", false},
		{"DEL", "All/x\x7f", false},
		{"C1 control", "All/x\u0085", false},
		{"backslash", `All\x.pkg`, false},
		{"backslash dot-dot", `..\..\x`, false},
		{"invalid UTF-8", "All/\xff.pkg", false},
		{"overlong UTF-8 slash", "a\xc0\xafb", false},
		{"reserved", ".pkgcdn", false},
		{"under reserved", ".pkgcdn/manifest", false},
		{"reserved upper case", ".PKGCDN/manifest", false},
		{"reserved mixed case", ".PkgCdn", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(tt.in)
			if tt.ok && err != nil {
				t.Errorf("Validate(%q) = %v, want nil", tt.in, err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate(%q) = %v, want ErrInvalid", tt.in, err)
			}
		})
	}
}

func FuzzRelpath(f *testing.F) {
	for _, s := range []string{"All/curl-8.10.pkg", "../x", "a/../../b", "/etc", ".pkgcdn/x", "a//b", `a\b`, "a/./b", "~$ x", "All/Hashed/curl~1a.pkg"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if err := Validate(p); err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate(%q) = %v, not ErrInvalid", p, err)
			}
			return
		}
		// An accepted path joined to a directory stays inside it, and
		// names the same file as the path itself (no cleaning happened).
		const dir = "/srv/pkgcdn/sets/x/20261125T031500Z"
		joined := filepath.Join(dir, p)
		rel, err := filepath.Rel(dir, joined)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
			t.Fatalf("Validate(%q) = nil but Join(dir, p) = %q leaves dir", p, joined)
		}
		if !strings.HasPrefix(joined, dir+"/") {
			t.Fatalf("Validate(%q) = nil but Join(dir, p) = %q leaves dir", p, joined)
		}
		if joined != dir+"/"+p {
			t.Fatalf("Validate(%q) = nil but Join cleaned it to %q", p, joined)
		}
		if first, _, _ := strings.Cut(p, "/"); strings.EqualFold(first, Reserved) {
			t.Fatalf("Validate(%q) = nil for a reserved path", p)
		}
	})
}
