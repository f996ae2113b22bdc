package origin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/httpserve"
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

// BenchmarkServeSmallFile measures the small-file path as pkgserve runs
// it: an httpserve.Server (one write per response, stall deadline,
// metrics) on loopback, GETs of 64 different 4 KiB files over one
// keep-alive connection by a minimal client, so that the server's cost
// per request dominates. Sub-benchmarks: from memory (the cache holds
// them all), read and verified on every request (no cache), and by
// sendfile (the large-file path, for comparison).
func BenchmarkServeSmallFile(b *testing.B) {
	for _, bc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"memory", nil},
		{"nocache", func(c *Config) { c.MemoryCacheBytes = -1 }},
		{"sendfile", func(c *Config) { c.SmallFileBytes = -1 }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := newFixture(b, bc.mod)
			files := map[string]string{}
			for i := range 64 {
				files[fmt.Sprintf("All/p%02d.pkg", i)] = fmt.Sprintf("%04096d", i)
			}
			f.publish(set, files)
			hs, err := httpserve.New(httpserve.Config{Addr: "127.0.0.1:0", Handler: f.srv, Observe: f.srv.Observe})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(b.Context())
			done := make(chan error, 1)
			go func() { done <- hs.Serve(ctx) }()
			defer func() { cancel(); <-done }()
			conn, err := net.Dial("tcp", hs.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			reqs := make([][]byte, 64)
			for i := range reqs {
				reqs[i] = fmt.Appendf(nil, "GET /%s/All/p%02d.pkg HTTP/1.1\r\nHost: bench\r\nUser-Agent: pkg/2.8\r\n\r\n", set, i)
			}
			br := bufio.NewReaderSize(conn, 64<<10)
			b.SetBytes(4096)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := conn.Write(reqs[i%64]); err != nil {
					b.Fatal(err)
				}
				i++
				if err := readResponse(br, 4096); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readResponse reads one response with a body of n bytes, checking only
// its status line.
func readResponse(br *bufio.Reader, n int) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
		return fmt.Errorf("status line %q", line)
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
	}
	_, err = br.Discard(n)
	return err
}
