package route

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

var testSets = map[string]bool{
	"FreeBSD:14:amd64/latest":           true,
	"FreeBSD:14:amd64":                  true, // a prefix of another set
	"FreeBSD:14:amd64/latest/All/Extra": false,
	"debian":                            true,
}

func isTestSet(name string) bool { return testSets[name] }

const hash = "ab12000000000000000000000000000000000000000000000000000000000000"

func mustID(t testing.TB, s string) setid.ID {
	t.Helper()
	id, err := setid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestParse(t *testing.T) {
	id := mustID(t, "20261125T031500Z")
	d, _ := digest.Parse(hash)
	tests := []struct {
		name string
		path string
		want Target
	}{
		{"root", "/", Target{Kind: Root}},
		{"root double slash", "//", Target{Kind: Root}},
		{"set file", "/FreeBSD:14:amd64/latest/All/curl-8.10.pkg",
			Target{Kind: SetFile, Set: "FreeBSD:14:amd64/latest", Path: "All/curl-8.10.pkg"}},
		{"longest set wins", "/FreeBSD:14:amd64/latest/meta.conf",
			Target{Kind: SetFile, Set: "FreeBSD:14:amd64/latest", Path: "meta.conf"}},
		{"shorter set", "/FreeBSD:14:amd64/quarterly/meta.conf",
			Target{Kind: SetFile, Set: "FreeBSD:14:amd64", Path: "quarterly/meta.conf"}},
		{"leading double slash", "//FreeBSD:14:amd64/latest/All/x.pkg",
			Target{Kind: SetFile, Set: "FreeBSD:14:amd64/latest", Path: "All/x.pkg"}},
		{"tilde and dollar", "/debian/All/Hashed/curl-8.10~1a2b$3c.pkg",
			Target{Kind: SetFile, Set: "debian", Path: "All/Hashed/curl-8.10~1a2b$3c.pkg"}},
		{"sets", "/.pkgcdn/sets", Target{Kind: Sets}},
		{"sets sig", "/.pkgcdn/sets.minisig", Target{Kind: SetsSig}},
		{"notify", "/.pkgcdn/notify", Target{Kind: Notify}},
		{"manifest", "/.pkgcdn/manifest/FreeBSD:14:amd64/latest/20261125T031500Z",
			Target{Kind: Manifest, Set: "FreeBSD:14:amd64/latest", ID: id}},
		{"manifest sig", "/.pkgcdn/manifest/debian/20261125T031500Z.minisig",
			Target{Kind: ManifestSig, Set: "debian", ID: id}},
		{"object", "/.pkgcdn/objects/sha256/" + hash, Target{Kind: Object, Hash: d}},
		{"publish", "/.pkgcdn/publish/objects/" + hash, Target{Kind: Publish, Op: "objects/" + hash}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.path, isTestSet)
			if err != nil || got != tt.want {
				t.Errorf("Parse(%q) = %+v, %v, want %+v", tt.path, got, err, tt.want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, path string }{
		{"empty", ""},
		{"relative", "FreeBSD:14:amd64/latest/meta.conf"},
		{"unknown set", "/nosuchset/meta.conf"},
		{"set directory", "/debian/"},
		{"set itself", "/debian"},
		{"subdirectory slash", "/debian/All/"},
		{"dot dot", "/debian/../etc/passwd"},
		{"dot dot at end", "/debian/All/.."},
		{"dot segment", "/debian/./meta.conf"},
		{"inner double slash", "/debian/All//x.pkg"},
		{"backslash", `/debian/All\..\x.pkg`},
		{"nul", "/debian/All/x.pkg\x00.txt"},
		{"control", "/debian/All/x\n.pkg"},
		{"invalid utf-8", "/debian/\xc0\xae\xc0\xae/x"},
		{"reserved in set", "/debian/.pkgcdn/manifest"},
		{"set name with dot segment", "/../debian/x"},
		{"overlong", "/debian/" + strings.Repeat("a", MaxPathLen)},
		{"overlong rel", "/debian/" + strings.Repeat("a/", relpath.MaxLen)},
		{"unknown internal", "/.pkgcdn/staging/x"},
		{"internal lock", "/.pkgcdn/.lock"},
		{"internal SETS name", "/.pkgcdn/SETS"},
		{"publish empty op", "/.pkgcdn/publish/"},
		{"object short hash", "/.pkgcdn/objects/sha256/ab12"},
		{"object upper hash", "/.pkgcdn/objects/sha256/" + strings.ToUpper(hash)},
		{"object traversal", "/.pkgcdn/objects/sha256/../../SETS"},
		{"manifest no id", "/.pkgcdn/manifest/debian"},
		{"manifest bad id", "/.pkgcdn/manifest/debian/yesterday"},
		{"manifest bad set", "/.pkgcdn/manifest/../x/20261125T031500Z"},
		{"prefix without slash", "/.pkgcdn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.path, isTestSet)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Parse(%q) = %+v, %v, want ErrNotFound", tt.path, got, err)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name, raw string
		wantErr   bool
		wantPath  string
	}{
		{"plain", "/debian/All/x.pkg", false, "All/x.pkg"},
		{"escaped tilde", "/debian/All/x%7E1.pkg", false, "All/x~1.pkg"},
		{"escaped space", "/debian/All/a%20b.pkg", false, "All/a b.pkg"},
		{"encoded slash", "/debian/All%2fx.pkg", true, ""},
		{"encoded slash upper", "/debian%2FAll/x.pkg", true, ""},
		{"encoded dot dot slash", "/debian/%2e%2e%2fetc/passwd", true, ""},
		{"encoded dot dot", "/debian/%2e%2e/etc/passwd", true, ""},
		{"encoded backslash", "/debian/All%5c..%5cx", true, ""},
		{"encoded nul", "/debian/All/x%00.pkg", true, ""},
		{"overlong utf-8 dot", "/debian/%c0%ae%c0%ae/x", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := url.ParseRequestURI(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseURL(u, isTestSet)
			if tt.wantErr {
				if !errors.Is(err, ErrNotFound) {
					t.Errorf("ParseURL(%q) = %+v, %v, want ErrNotFound", tt.raw, got, err)
				}
				return
			}
			if err != nil || got.Kind != SetFile || got.Path != tt.wantPath {
				t.Errorf("ParseURL(%q) = %+v, %v, want path %q", tt.raw, got, err, tt.wantPath)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	id := mustID(t, "20261125T031500Z")
	d, _ := digest.Parse(hash)
	for _, base := range []string{"http://m.example/pkg", "http://m.example/pkg/", "http://m.example/pkg?x=1#f"} {
		u, _ := url.Parse(base)
		tests := []struct{ name, got, want string }{
			{"sets", SetsURL(u, false), "http://m.example/pkg/.pkgcdn/sets"},
			{"sets sig", SetsURL(u, true), "http://m.example/pkg/.pkgcdn/sets.minisig"},
			{"manifest", ManifestURL(u, "FreeBSD:14:amd64/latest", id, false), "http://m.example/pkg/.pkgcdn/manifest/FreeBSD:14:amd64/latest/20261125T031500Z"},
			{"manifest sig", ManifestURL(u, "a", id, true), "http://m.example/pkg/.pkgcdn/manifest/a/20261125T031500Z.minisig"},
			{"object", ObjectURL(u, d), "http://m.example/pkg/.pkgcdn/objects/sha256/" + hash},
			{"file", FileURL(u, "a", "All/x y#1?.pkg"), "http://m.example/pkg/a/All/x%20y%231%3F.pkg"},
			{"file tilde", FileURL(u, "a", "All/Hashed/c~1$2.pkg"), "http://m.example/pkg/a/All/Hashed/c~1$2.pkg"},
			{"publish", PublishURL(u, "missing"), "http://m.example/pkg/.pkgcdn/publish/missing"},
		}
		for _, tt := range tests {
			if tt.got != tt.want {
				t.Errorf("base %s: %s URL = %q, want %q", base, tt.name, tt.got, tt.want)
			}
		}
	}
}

// TestFileURLRoundTrip checks that what FileURL builds, ParseURL reads back.
func TestFileURLRoundTrip(t *testing.T) {
	base, _ := url.Parse("http://m.example/")
	for _, rel := range []string{"All/x.pkg", "All/a b.pkg", "All/%41.pkg", "a#b?c", "ü/ß.pkg", "All/Hashed/c~1$2.pkg"} {
		u, err := url.Parse(FileURL(base, "debian", rel))
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseURL(u, isTestSet)
		if err != nil || got.Path != rel || got.Set != "debian" {
			t.Errorf("ParseURL(FileURL(%q)) = %+v, %v", rel, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"/", "/debian/All/x.pkg", "//FreeBSD:14:amd64/latest/meta.conf",
		"/.pkgcdn/sets", "/.pkgcdn/manifest/debian/20261125T031500Z.minisig",
		"/.pkgcdn/objects/sha256/" + hash, "/.pkgcdn/publish/commit", "/debian/../x", "/debian/%2e%2e/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, err := Parse(p, isTestSet)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrNotFound", p, err)
			}
			return
		}
		clean := "/" + strings.TrimLeft(p, "/")
		switch got.Kind {
		case SetFile:
			if !isTestSet(got.Set) || setid.ValidateName(got.Set) != nil {
				t.Fatalf("Parse(%q): set %q is not a valid served set", p, got.Set)
			}
			if err := relpath.Validate(got.Path); err != nil {
				t.Fatalf("Parse(%q): path %q: %v", p, got.Path, err)
			}
			if "/"+got.Set+"/"+got.Path != clean {
				t.Fatalf("Parse(%q) = set %q path %q, which is not the request", p, got.Set, got.Path)
			}
		case Manifest, ManifestSig:
			if setid.ValidateName(got.Set) != nil || got.ID.IsZero() {
				t.Fatalf("Parse(%q) = %+v: bad set or ID", p, got)
			}
			u := ManifestURL(&url.URL{Path: "/"}, got.Set, got.ID, got.Kind == ManifestSig)
			if want := "/" + strings.TrimPrefix(clean, "/"); u != want {
				t.Fatalf("Parse(%q): manifest URL %q does not round-trip to %q", p, u, want)
			}
		case Object:
			if clean != Prefix+"objects/sha256/"+got.Hash.String() {
				t.Fatalf("Parse(%q) = object %s, which is not the request", p, got.Hash)
			}
		case Root:
			if clean != "/" {
				t.Fatalf("Parse(%q) = Root", p)
			}
		case Sets, SetsSig, Notify, Publish:
			if !strings.HasPrefix(clean, Prefix) {
				t.Fatalf("Parse(%q) = %+v outside %s", p, got, Prefix)
			}
		default:
			t.Fatalf("Parse(%q) = unknown kind %d", p, got.Kind)
		}
	})
}

func BenchmarkParseSetFile(b *testing.B) {
	for b.Loop() {
		_, _ = Parse("/FreeBSD:14:amd64/latest/All/Hashed/curl-8.10~1a2b3c.pkg", isTestSet)
	}
}

func BenchmarkParseManySegments(b *testing.B) {
	p := "/" + strings.Repeat("a/", MaxPathLen/2-1)
	for b.Loop() {
		_, _ = Parse(p, isTestSet)
	}
}

func TestCleanURL(t *testing.T) {
	tests := []struct {
		name, raw, want string
		ok              bool
	}{
		{"plain", "/a/b.pkg", "/a/b.pkg", true},
		{"apt flat repo", "/debian/e2e/./Packages", "/debian/e2e/Packages", true},
		{"repeated dot segments", "/a/././b", "/a/b", true},
		{"trailing dot", "/a/.", "/a/", true},
		{"dot-dot kept for Parse to refuse", "/a/../b", "/a/../b", true},
		{"dotfile kept", "/a/.hidden", "/a/.hidden", true},
		{"encoded slash", "/a%2fb", "", false},
		{"encoded backslash", "/a%5Cb", "", false},
		{"encoded NUL", "/a%00b", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := CleanURL(u)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("CleanURL(%q) = %q, %v; want %q, ok=%v", tt.raw, got, err, tt.want, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("CleanURL(%q) error %v does not wrap ErrNotFound", tt.raw, err)
			}
		})
	}
}

func TestContentType(t *testing.T) {
	tests := []struct{ path, want string }{
		{"meta.conf", "text/plain; charset=utf-8"},
		{"packagesite.tzst", "application/zstd"},
		{"All/curl-8.10.pkg", "application/octet-stream"},
		{"dists/stable/Release.GZ", "application/gzip"},
		{"no-extension", "application/octet-stream"},
	}
	for _, tt := range tests {
		if got := ContentType(tt.path); got != tt.want {
			t.Errorf("ContentType(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestParseSetFileAllocs: parsing the path of a set file, the hot path of
// every request, allocates nothing (set names whose segments look like set
// IDs by length once cost a time.ParseError per request).
func TestParseSetFileAllocs(t *testing.T) {
	isSet := func(name string) bool { return name == "FreeBSD:14:amd64/latest" }
	for _, p := range []string{"/FreeBSD:14:amd64/latest/All/pkg-1.0.pkg", "//FreeBSD:14:amd64/latest/meta.conf"} {
		var err error
		if n := testing.AllocsPerRun(100, func() { _, err = Parse(p, isSet) }); n != 0 || err != nil {
			t.Errorf("Parse(%q): %v allocations, err %v; want 0, nil", p, n, err)
		}
	}
}
