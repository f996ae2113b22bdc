package loadgen

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// counter is a handler that serves body for /ok*, 500 for /fail, a short
// body for /short, and counts requests by path.
type counter struct {
	body []byte
	mu   sync.Mutex // guards hits
	hits map[string]int
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	c.hits[r.URL.Path]++
	c.mu.Unlock()
	switch {
	case r.URL.Path == "/fail":
		http.Error(w, "no", http.StatusInternalServerError)
	case r.URL.Path == "/short":
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("cut")) // the server then closes: a short body
	default:
		_, _ = w.Write(c.body)
	}
}

func newServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestHammerCountsRequestsAndErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		paths      []string
		max        int64
		wantOK     int64
		wantErrors int64
	}{
		{"all good", []string{"/ok1", "/ok2"}, 100, 100, 0},
		{"one in two fails", []string{"/ok", "/fail"}, 40, 20, 20},
		{"short body", []string{"/short"}, 5, 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := &counter{body: bytes.Repeat([]byte("x"), 4096), hits: map[string]int{}}
			srv := newServer(t, h)
			var urls []string
			for _, p := range tc.paths {
				urls = append(urls, srv.URL+p)
			}
			// One connection keeps the alternation exact.
			res, err := Hammer(t.Context(), HammerConfig{URLs: urls, Conns: 1, MaxRequests: tc.max})
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests != tc.wantOK || res.Errors != tc.wantErrors {
				t.Errorf("Hammer = %d ok, %d errors (%s); want %d, %d", res.Requests, res.Errors, res.FirstError, tc.wantOK, tc.wantErrors)
			}
			if tc.wantErrors > 0 && res.FirstError == "" {
				t.Error("FirstError empty")
			}
			if res.Bytes < tc.wantOK*4096 {
				t.Errorf("Bytes = %d, want at least %d", res.Bytes, tc.wantOK*4096)
			}
			if tc.wantOK > 0 && (res.P50 <= 0 || res.P99 < res.P50 || res.Max < res.P99 || res.ReqPerSec <= 0) {
				t.Errorf("latencies p50 %v p99 %v max %v, rate %v: want 0 < p50 <= p99 <= max, rate > 0", res.P50, res.P99, res.Max, res.ReqPerSec)
			}
		})
	}
}

func TestHammerManyConnsStopsAtMax(t *testing.T) {
	t.Parallel()
	h := &counter{body: []byte("hello"), hits: map[string]int{}}
	srv := newServer(t, h)
	res, err := Hammer(t.Context(), HammerConfig{URLs: []string{srv.URL + "/a", srv.URL + "/b"}, Conns: 8, MaxRequests: 500})
	if err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	served := h.hits["/a"] + h.hits["/b"]
	h.mu.Unlock()
	if res.Requests != 500 || served != 500 {
		t.Errorf("Hammer = %d requests, server saw %d; want 500, 500", res.Requests, served)
	}
}

func TestHammerDurationCutsRequestsWithoutErrors(t *testing.T) {
	t.Parallel()
	// Every response starts, then hangs until the client gives up: only
	// the deadline can end the run, and what it cuts off is no error.
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2000")
		_, _ = w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	res, err := Hammer(t.Context(), HammerConfig{URLs: []string{srv.URL + "/hang"}, Conns: 4, Duration: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 0 || res.Errors != 0 {
		t.Errorf("Hammer = %d requests, %d errors (%s); want 0, 0", res.Requests, res.Errors, res.FirstError)
	}
}

func TestHammerNoURLs(t *testing.T) {
	t.Parallel()
	if _, err := Hammer(t.Context(), HammerConfig{}); !errors.Is(err, ErrNoURLs) {
		t.Errorf("Hammer() error = %v, want ErrNoURLs", err)
	}
}

func TestDistinctFetchesEachURLOnce(t *testing.T) {
	t.Parallel()
	h := &counter{body: bytes.Repeat([]byte("y"), 65536), hits: map[string]int{}}
	srv := newServer(t, h)
	var urls []string
	for i := range 300 {
		urls = append(urls, srv.URL+"/ok/"+strings.Repeat("z", i%7)+string(rune('a'+i%26))+"/"+string(rune('0'+i%10))+"-"+time.Duration(i).String())
	}
	res, err := Distinct(t.Context(), DistinctConfig{URLs: urls, Concurrency: 16})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 300 || res.Errors != 0 || res.Bytes != 300*65536 {
		t.Errorf("Distinct = %d requests, %d errors, %d bytes; want 300, 0, %d", res.Requests, res.Errors, res.Bytes, 300*65536)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range urls {
		if n := h.hits[strings.TrimPrefix(u, srv.URL)]; n != 1 {
			t.Errorf("%s fetched %d times, want 1", u, n)
		}
	}
}

// barrier is a handler that answers no request until n are in flight: a
// herd passes only if its clients really are released together.
type barrier struct {
	n       int
	body    []byte
	arrived atomic.Int32
	all     chan struct{}
}

func (b *barrier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if int(b.arrived.Add(1)) == b.n {
		close(b.all)
	}
	select {
	case <-b.all:
	case <-r.Context().Done():
		return
	}
	_, _ = w.Write(b.body)
}

func TestHerdReleasesTogetherAndVerifies(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("pkgcdn"), 100000)
	good := digest.Sum(body)
	for _, tc := range []struct {
		name     string
		sha      digest.SHA256
		size     int64
		hashing  int
		wantOK   int
		wantFail int
	}{
		{"verified", good, int64(len(body)), 0, 20, 0},
		{"unchecked", digest.SHA256{}, 0, 0, 20, 0},
		{"wrong digest", digest.Sum([]byte("other")), 0, 0, 0, 20},
		{"wrong digest, 3 clients hash", digest.Sum([]byte("other")), 0, 3, 17, 3},
		{"wrong size", digest.SHA256{}, 5, 0, 0, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, &barrier{n: 20, body: body, all: make(chan struct{})})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			res, err := Herd(ctx, HerdConfig{URL: srv.URL + "/big", Clients: 20, SHA256: tc.sha, Size: tc.size, HashClients: tc.hashing})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.wantOK || res.Failed != tc.wantFail {
				t.Fatalf("Herd = %d ok, %d failed (%s); want %d, %d", res.OK, res.Failed, res.FirstError, tc.wantOK, tc.wantFail)
			}
			for i, c := range res.Clients {
				if c.Status != http.StatusOK || c.Bytes != int64(len(body)) || c.TTFB <= 0 || c.Total < c.TTFB {
					t.Errorf("client %d = %+v: want status 200, %d bytes, 0 < TTFB <= Total", i, c, len(body))
				}
			}
			if tc.wantOK > 0 && (res.MedianTTFB <= 0 || res.MaxTTFB < res.MedianTTFB || res.MaxTotal < res.MedianTotal) {
				t.Errorf("median/max TTFB %v/%v, total %v/%v", res.MedianTTFB, res.MaxTTFB, res.MedianTotal, res.MaxTotal)
			}
		})
	}
}

func TestWaitBody(t *testing.T) {
	t.Parallel()
	var v atomic.Value
	v.Store("old")
	var hits atomic.Int32
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Switch content on the third request: no sleeps needed.
		if hits.Add(1) == 3 {
			v.Store("new")
		}
		_, _ = w.Write([]byte(v.Load().(string)))
	}))
	if _, err := WaitBody(t.Context(), nil, srv.URL, digest.Sum([]byte("new")), time.Millisecond, 30*time.Second); err != nil {
		t.Fatalf("WaitBody = %v, want the new body found", err)
	}
	if _, err := WaitBody(t.Context(), nil, srv.URL, digest.Sum([]byte("never")), time.Millisecond, 20*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitBody for bytes never served = %v, want ErrTimeout", err)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, tc := range []struct{ p, want int }{{50, 5}, {99, 10}, {100, 10}, {1, 1}} {
		if got := percentile(d, tc.p); got != time.Duration(tc.want) {
			t.Errorf("percentile(1..10, %d) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %d, want 0", got)
	}
}
