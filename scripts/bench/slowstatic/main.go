// Command slowstatic serves a directory the way a distant, busy origin
// does: every response waits -latency before its first byte and is then
// paced to -rate bytes per second (per response, which on HTTP/1.1 is per
// connection). It counts requests per path, so a benchmark can tell how
// many times a proxy fetched a file:
//
//	GET /__count             JSON object, path → requests
//	GET /__count?path=/x     the count of /x as a bare number
//	POST /__reset            forget all counts
//
// It is a benchmark tool for loopback use only: no listings, no TLS.
//
//	slowstatic -root DIR [-listen 127.0.0.1:0] [-rate 200MB] [-latency 50ms]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	root := flag.String("root", "", "directory to serve (required)")
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on; the chosen one is printed on stdout")
	rate := flag.String("rate", "200MB", "bytes per second per response (suffix KB, MB, GB: powers of 1000; 0: unlimited)")
	latency := flag.Duration("latency", 50*time.Millisecond, "delay before the first byte of each response")
	flag.Parse()
	bps, err := parseRate(*rate)
	if err != nil || *root == "" {
		log.Fatalf("slowstatic: -root is required and -rate must be like 200MB (%v)", err)
	}
	dir, err := os.OpenRoot(*root)
	if err != nil {
		log.Fatalf("slowstatic: %v", err)
	}
	s := &server{root: dir, rate: bps, latency: *latency, counts: map[string]int64{}}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("slowstatic: %v", err)
	}
	fmt.Println(ln.Addr())
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close() // benchmark tool: in-flight responses may be cut
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("slowstatic: %v", err)
	}
}

func parseRate(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad rate %q", s)
	}
	return int64(n * float64(mult)), nil
}

type server struct {
	root    *os.Root
	rate    int64 // bytes per second; 0: unlimited
	latency time.Duration
	mu      sync.Mutex // guards counts
	counts  map[string]int64
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/__count":
		s.mu.Lock()
		defer s.mu.Unlock()
		if p := r.URL.Query().Get("path"); p != "" {
			fmt.Fprintln(w, s.counts[p])
			return
		}
		_ = json.NewEncoder(w).Encode(s.counts) // client gone: nothing to do
		return
	case "/__reset":
		s.mu.Lock()
		clear(s.counts)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.counts[r.URL.Path]++
	s.mu.Unlock()

	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" {
		name = "."
	}
	f, err := s.root.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	select {
	case <-time.After(s.latency):
	case <-r.Context().Done():
		return
	}
	var out http.ResponseWriter = w
	if s.rate > 0 {
		out = &paced{ResponseWriter: w, rate: s.rate, start: time.Now()}
	}
	http.ServeContent(out, r, name, info.ModTime(), f)
}

// paced is a ResponseWriter that holds the body to rate bytes per second
// since start. It hides the ReaderFrom of the real writer, so sendfile
// cannot bypass it.
type paced struct {
	http.ResponseWriter
	rate  int64
	start time.Time
	sent  int64
}

// chunk is the pacing granularity: about 0.3 ms of data at 200 MB/s.
const chunk = 64 << 10

func (p *paced) Write(b []byte) (int, error) {
	var n int
	for len(b) > 0 {
		c := b[:min(len(b), chunk)]
		due := p.start.Add(time.Duration(float64(p.sent) / float64(p.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		m, err := p.ResponseWriter.Write(c)
		n += m
		p.sent += int64(m)
		if err != nil {
			return n, err
		}
		b = b[len(c):]
	}
	return n, nil
}
