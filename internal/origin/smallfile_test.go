package origin

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestServeSmallFileSameAsServeContent: the small-file path (from memory,
// by hand for a plain GET or HEAD) answers every request exactly as the
// sendfile path (http.ServeContent) does: status, headers, body.
func TestServeSmallFileSameAsServeContent(t *testing.T) {
	files := map[string]string{"All/a.pkg": "0123456789abcdef", "meta.conf": "version = 2;\n", "All/empty.pkg": ""}
	small := newFixture(t, nil)
	big := newFixture(t, func(c *Config) { c.SmallFileBytes = -1 })
	m := small.publish(set, files)
	if mb := big.publish(set, files); mb.ID != m.ID {
		t.Fatalf("set IDs differ: %s, %s", m.ID, mb.ID)
	}
	etag := `"` + m.Entries[0].SHA256.String() + `"`
	mod := m.ID.Time().Format(http.TimeFormat)
	tests := []struct {
		name, method, path string
		hdr                []string
	}{
		{"get", "GET", "All/a.pkg", nil},
		{"head", "HEAD", "All/a.pkg", nil},
		{"text", "GET", "meta.conf", nil},
		{"empty", "GET", "All/empty.pkg", nil},
		{"range", "GET", "All/a.pkg", []string{"Range", "bytes=3-7"}},
		{"suffix range", "GET", "All/a.pkg", []string{"Range", "bytes=-4"}},
		{"unsatisfiable", "GET", "All/a.pkg", []string{"Range", "bytes=99-"}},
		{"if-none-match", "GET", "All/a.pkg", []string{"If-None-Match", etag}},
		{"if-none-match other", "GET", "All/a.pkg", []string{"If-None-Match", `"x"`}},
		{"if-modified-since", "GET", "All/a.pkg", []string{"If-Modified-Since", mod}},
		{"if-match other", "GET", "All/a.pkg", []string{"If-Match", `"x"`}},
		{"if-unmodified-since", "HEAD", "All/a.pkg", []string{"If-Unmodified-Since", mod}},
		{"if-range", "GET", "All/a.pkg", []string{"Range", "bytes=0-1", "If-Range", etag}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/" + set + "/" + tt.path
			r1, b1 := small.do(tt.method, path, nil, tt.hdr...)
			r2, b2 := big.do(tt.method, path, nil, tt.hdr...)
			if r1.StatusCode != r2.StatusCode || string(b1) != string(b2) {
				t.Errorf("%s %s %v: small path %s %q, ServeContent %s %q", tt.method, path, tt.hdr, r1.Status, b1, r2.Status, b2)
			}
			r1.Header.Del("Date")
			r2.Header.Del("Date")
			if got, want := fmt.Sprint(r1.Header), fmt.Sprint(r2.Header); got != want {
				t.Errorf("%s %s %v: headers\nsmall path   %s\nServeContent %s", tt.method, path, tt.hdr, got, want)
			}
		})
	}
}

// overwrite replaces the bytes of a published file in place (the object
// and every link to it), as a damaged disk or an intruder would.
func overwrite(t *testing.T, f *fixture, rel, data string) {
	t.Helper()
	p, err := f.root.FilePath(set, f.liveID(set), rel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestServeSmallFileDamagedIs500: a small file whose bytes on disk are not
// the manifest's (same size but other bytes, longer, shorter) is a 500,
// never served; once repaired it is served. Errors are not cached.
func TestServeSmallFileDamagedIs500(t *testing.T) {
	const good = "the published bytes"
	tests := []struct{ name, data string }{
		{"tampered, same size", "the tampered bytes!"},
		{"longer", good + "+"},
		{"shorter", good[:5]},
		{"empty", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.publish(set, map[string]string{"All/a.pkg": good})
			overwrite(t, f, "All/a.pkg", tt.data)
			resp, body := f.get("/" + set + "/All/a.pkg")
			if resp.StatusCode != 500 || strings.Contains(string(body), tt.data) && tt.data != "" {
				t.Errorf("damaged file: %s %q, want 500 without its bytes", resp.Status, body)
			}
			overwrite(t, f, "All/a.pkg", good)
			if resp, body := f.get("/" + set + "/All/a.pkg"); resp.StatusCode != 200 || string(body) != good {
				t.Errorf("repaired file: %s %q, want 200 %q", resp.Status, body, good)
			}
		})
	}
}

// TestServeSmallFileFromMemory: a small file is read and verified once,
// then served from memory (so a copy damaged afterwards on disk does not
// matter); with the memory cache off it is read and verified every time.
func TestServeSmallFileFromMemory(t *testing.T) {
	for _, tt := range []struct {
		name      string
		memory    int64
		wantLoads float64
		wantAfter int // status after the disk copy is damaged
	}{
		{"cache", 0, 1, 200},
		{"no cache", -1, 2, 500}, // the damaged read is refused, not counted
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.MemoryCacheBytes = tt.memory })
			f.publish(set, map[string]string{"All/a.pkg": "aaaa", "All/b.pkg": "bbbb"})
			for range 2 {
				if resp, body := f.get("/" + set + "/All/a.pkg"); resp.StatusCode != 200 || string(body) != "aaaa" {
					t.Fatalf("GET = %s %q", resp.Status, body)
				}
			}
			overwrite(t, f, "All/a.pkg", "AAAA")
			resp, body := f.get("/" + set + "/All/a.pkg")
			if resp.StatusCode != tt.wantAfter || resp.StatusCode == 200 && string(body) != "aaaa" {
				t.Errorf("GET after damage on disk = %s %q, want %d (and never AAAA)", resp.Status, body, tt.wantAfter)
			}
			if got := f.metricValue("pkgcdn_origin_memory_cache_loads_total"); got != tt.wantLoads {
				t.Errorf("loads = %v, want %v", got, tt.wantLoads)
			}
		})
	}
}

// TestServeSmallFileBounds: the memory cache stays within
// MemoryCacheBytes however many files are served, and only files of at
// most SmallFileBytes go through it.
func TestServeSmallFileBounds(t *testing.T) {
	const limit = 8 << 10
	f := newFixture(t, func(c *Config) { c.MemoryCacheBytes, c.SmallFileBytes = limit, 1000 })
	files := map[string]string{"All/big.pkg": strings.Repeat("B", 1001), "All/edge.pkg": strings.Repeat("E", 1000)}
	for i := range 30 {
		files[fmt.Sprintf("All/f%02d.pkg", i)] = fmt.Sprintf("%0900d", i)
	}
	f.publish(set, files)
	for p, want := range files {
		if resp, body := f.get("/" + set + "/" + p); resp.StatusCode != 200 || string(body) != want {
			t.Fatalf("GET %s = %s, %d bytes", p, resp.Status, len(body))
		}
		if got := f.metricValue("pkgcdn_origin_memory_cache_bytes"); got > limit {
			t.Fatalf("memory cache holds %v bytes, over its %d", got, limit)
		}
	}
	// Every file but big.pkg was loaded into memory.
	if got := f.metricValue("pkgcdn_origin_memory_cache_loads_total"); got != float64(len(files)-1) {
		t.Errorf("loads = %v, want %d", got, len(files)-1)
	}
}
