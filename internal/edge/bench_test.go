package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// discardWriter is a ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkCachedSmallHit is scenario (a) inside the handler: a cached 4
// KiB file, answered from the memory arena or (MemoryCacheBytes < 0) from
// the disk cache by http.ServeContent, as before the arena.
func BenchmarkCachedSmallHit(b *testing.B) {
	for _, tc := range []struct {
		name string
		mem  int64
	}{{"memory", 0}, {"disk", -1}} {
		b.Run(tc.name, func(b *testing.B) {
			s, v := testKeys(b)
			m, up := newFakeMaster(b, s)
			body := pattern(4096, 12)
			m.publish(testSet, map[string]string{"All/h.pkg": body})
			e := newTestEdge(b, v, []string{up.URL}, func(c *Config, _ *cache.Config) { c.MemoryCacheBytes = tc.mem })
			e.refresh(b)
			p := "/" + testSet + "/All/h.pkg"
			mustGet(b, e.srv.URL, p, http.StatusOK)
			waitCached(b, e.cache, cache.Key(digest.Sum([]byte(body))))
			mustGet(b, e.srv.URL, p, http.StatusOK) // loads the arena
			req := httptest.NewRequest(http.MethodGet, p, nil)
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.code = 0
				e.ServeHTTP(w, req)
				if w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkSmallFill is scenario (d) inside the process: distinct
// uncached 64 KiB files from an upstream on loopback, one request each:
// "whole" as served now (sent in one write once verified), "streamed" the
// way every fill was served before (header flushed first, then the body
// as it is released; a Range request still takes that path).
func BenchmarkSmallFill(b *testing.B) {
	for _, tc := range []struct {
		name string
		hdr  []string
		want int
	}{{"whole", nil, http.StatusOK}, {"streamed", []string{"Range", "bytes=0-"}, http.StatusPartialContent}} {
		b.Run(tc.name, func(b *testing.B) {
			s, v := testKeys(b)
			m, up := newFakeMaster(b, s)
			const n = 256
			files := map[string]string{}
			for i := range n {
				files[fmt.Sprintf("All/f%d.pkg", i)] = pattern(64<<10-8, byte(i)) + fmt.Sprintf("%08d", i)
			}
			m.publish(testSet, files)
			e := newTestEdge(b, v, []string{up.URL}, nil)
			e.refresh(b)
			b.SetBytes(64 << 10)
			i := 0
			for b.Loop() {
				if i%n == 0 && i > 0 { // every file cached: forget them all
					b.StopTimer()
					for _, body := range files {
						_, _ = e.cache.Remove(cache.Key(digest.Sum([]byte(body))))
					}
					b.StartTimer()
				}
				resp, body, err := get(b, e.srv.URL, "/"+testSet+fmt.Sprintf("/All/f%d.pkg", i%n), tc.hdr...)
				if err != nil || resp.StatusCode != tc.want || len(body) != 64<<10 {
					b.Fatalf("GET: %v, %d bytes", err, len(body))
				}
				i++
			}
		})
	}
}
