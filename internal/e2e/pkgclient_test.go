package e2e

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
)

// pkgTree writes a small FreeBSD-style repository: catalogue files, packages
// with "~", "$" and "+" in their names, and Latest/pkg.pkg. It returns the
// files' contents by path.
func pkgTree(t *testing.T, dir string, version int) map[string][]byte {
	t.Helper()
	files := map[string][]byte{
		"meta.conf":                       []byte("version = 2;\npacking_format = \"tzst\";\n"),
		"packagesite.pkg":                 randomBytes(t, 40_000),
		"data.pkg":                        randomBytes(t, 30_000),
		"All/curl-8.10.pkg":               randomBytes(t, 300_000),
		"All/Hashed/curl-8.10~1a2b3c.pkg": randomBytes(t, 5_000),
		"All/p5-Money$-1.0.pkg":           randomBytes(t, 1_000),
		"All/gtk+3-3.24." + strconv.Itoa(version) + ".pkg": randomBytes(t, 70_000),
		"All/uncached-1.0.pkg":                             randomBytes(t, 2_000),
		"Latest/pkg.pkg":                                   randomBytes(t, 8_000),
	}
	for p, b := range files {
		writeFile(t, filepath.Join(dir, p), string(b))
	}
	return files
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPkgClientSemantics replays what FreeBSD pkg 2.x does against a repository
// URL (DESIGN.md, "What FreeBSD pkg needs"), against the master and the edge.
func TestPkgClientSemantics(t *testing.T) {
	s := newStack(t, stackOptions{})
	src := t.TempDir()
	files := pkgTree(t, src, 1)
	const set = "FreeBSD:14:amd64/latest"
	id := s.publish(t, set, src)
	waitSet(t, s.edgeURL, set, id)

	for _, srv := range []struct{ name, base string }{{"master", s.masterURL}, {"edge", s.edgeURL}} {
		t.Run(srv.name, func(t *testing.T) {
			// A mirror list appends the path to a URL ending in "/": "//" must work.
			repo := srv.base + "//" + set
			// pkg update: catalogue files in order; absent fallbacks are a fast 404.
			lastMod := map[string]string{}
			for _, name := range []string{"meta.conf", "meta.txz", "data.pkg", "data.tzst", "packagesite.pkg", "packagesite.tzst"} {
				code, h, body := get(t, repo+"/"+name)
				want, ok := files[name]
				switch {
				case !ok && code != http.StatusNotFound:
					t.Errorf("GET %s = %d, want 404 (absent fallback)", name, code)
				case ok && code != http.StatusOK:
					t.Errorf("GET %s = %d, want 200", name, code)
				case ok && !bytes.Equal(body, want):
					t.Errorf("GET %s: body differs from the published file", name)
				case ok && h.Get("Last-Modified") == "":
					t.Errorf("GET %s: no Last-Modified (pkg needs it for If-Modified-Since)", name)
				}
				lastMod[name] = h.Get("Last-Modified")
			}
			// Second pkg update: If-Modified-Since with the catalogue's Last-Modified → 304.
			for _, name := range []string{"meta.conf", "data.pkg", "packagesite.pkg"} {
				code, _, _ := get(t, repo+"/"+name, "If-Modified-Since", lastMod[name])
				if code != http.StatusNotModified {
					t.Errorf("GET %s If-Modified-Since %s = %d, want 304", name, lastMod[name], code)
				}
			}
			// Package fetches, including "~", "$" and "+" in names.
			for _, name := range []string{"All/Hashed/curl-8.10~1a2b3c.pkg", "All/p5-Money$-1.0.pkg", "All/gtk+3-3.24.1.pkg", "Latest/pkg.pkg"} {
				code, _, body := get(t, repo+"/"+name)
				if code != http.StatusOK || !bytes.Equal(body, files[name]) {
					t.Errorf("GET %s = %d (%d bytes), want 200 with the published bytes", name, code, len(body))
				}
			}
			// Resume: Range: bytes=N- without If-Range.
			name := "All/curl-8.10.pkg"
			code, _, body := get(t, repo+"/"+name, "Range", "bytes=123456-")
			if code != http.StatusPartialContent || !bytes.Equal(body, files[name][123456:]) {
				t.Errorf("GET %s Range bytes=123456- = %d (%d bytes), want 206 with the tail", name, code, len(body))
			}
		})
	}

	// Edge cut off from its master: cached files still served, an uncached
	// one is a 5xx (pkg fails over), an unknown path is still a 404.
	s.master.Kill()
	code, _, body := get(t, s.edgeURL+"/"+set+"/All/curl-8.10.pkg")
	if code != http.StatusOK || !bytes.Equal(body, files["All/curl-8.10.pkg"]) {
		t.Errorf("cached file with upstream down = %d, want 200 with the bytes", code)
	}
	code, _, _ = get(t, s.edgeURL+"/"+set+"/All/uncached-1.0.pkg")
	if code < 500 {
		t.Errorf("uncached file with upstream down = %d, want 502/503/504 so pkg fails over", code)
	}
	code, _, _ = get(t, s.edgeURL+"/"+set+"/All/never-published.pkg")
	if code != http.StatusNotFound {
		t.Errorf("path not in the set with upstream down = %d, want 404", code)
	}
}
