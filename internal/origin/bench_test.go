package origin

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// benchServe measures GETs of one file of size bytes over loopback, through
// the same wrapper pkgserve uses (metrics observation; the stall deadline
// is httpserve's and measured there).
func benchServe(b *testing.B, size int) {
	f := newFixture(b, nil)
	f.publish(set, map[string]string{"All/file.pkg": strings.Repeat("x", size)})
	url := f.ts.URL + "/" + set + "/All/file.pkg"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer c.CloseIdleConnections()
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || n != int64(size) || resp.StatusCode != 200 {
				b.Errorf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
				return
			}
		}
	})
}

func BenchmarkServeSmall(b *testing.B) { benchServe(b, 4<<10) }

func BenchmarkServeLarge(b *testing.B) { benchServe(b, 64<<20) }

// BenchmarkServeNotFound measures pkg's fallback names: a 404 for a path
// absent from the live set and its grace sets.
func BenchmarkServeNotFound(b *testing.B) {
	f := newFixture(b, nil)
	for i := range 3 {
		f.publish(set, map[string]string{"All/file.pkg": strings.Repeat("x", i+1)})
	}
	url := f.ts.URL + "/" + set + "/meta.txz"
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer c.CloseIdleConnections()
	for b.Loop() {
		resp, err := c.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			b.Fatalf("GET: %d", resp.StatusCode)
		}
	}
}
