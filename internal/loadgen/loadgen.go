// Package loadgen generates HTTP load for loopback benchmarks and measures
// what wrk cannot: a herd of clients released at the same instant on one
// URL, each with its own time to first byte and verified body.
//
// Three modes: Hammer (N keep-alive connections looping over URLs for a
// duration: requests/s, MB/s, latency percentiles), Herd (N clients behind
// a barrier on one URL: per-client TTFB and total time, body checked
// against a sha256), and Distinct (every URL fetched once with concurrency
// C: requests/s). WaitBody polls a URL until it serves given bytes, to time
// set propagation.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"time"
)

// NewClient returns a client for conns concurrent keep-alive connections
// to one host: MaxIdleConnsPerHost = conns, no proxy, no HTTP/2, and no
// transparent gzip (servers must send the bytes as stored).
func NewClient(conns int) *http.Client {
	t := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     4 << 10,
	}
	return &http.Client{Transport: t}
}

// Result sums up a Hammer or Distinct run.
type Result struct {
	Requests   int64         `json:"requests"` // answered 200 with the whole body
	Errors     int64         `json:"errors"`   // transport errors, other statuses, short bodies
	Bytes      int64         `json:"bytes"`    // body bytes read, partial bodies at the deadline included
	Duration   time.Duration `json:"duration_ns"`
	ReqPerSec  float64       `json:"req_per_sec"`
	MBPerSec   float64       `json:"mb_per_sec"` // 10^6 bytes per second
	P50        time.Duration `json:"p50_ns"`     // request latency, first byte sent to last byte read
	P99        time.Duration `json:"p99_ns"`
	Max        time.Duration `json:"max_ns"`
	FirstError string        `json:"first_error,omitempty"`
}

// defaultBufferBytes is the read buffer of a connection or client unless
// a Config's BufferBytes says otherwise.
const defaultBufferBytes = 256 << 10

// ErrNoURLs is returned when a mode is given no URL.
var ErrNoURLs = errors.New("loadgen: no URLs")

// worker is one connection's tally.
type worker struct {
	requests, errors, bytes int64
	latencies               []time.Duration
	firstErr                error
	buf                     []byte
}

func (w *worker) fail(err error) {
	w.errors++
	if w.firstErr == nil {
		w.firstErr = err
	}
}

// get fetches url to its end and records the outcome. It reports false
// when ctx ended the request, which then counts as nothing.
func (w *worker) get(ctx context.Context, c *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		w.fail(err)
		return true
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		w.fail(err)
		return true
	}
	n, err := readAll(resp.Body, w.buf)
	_ = resp.Body.Close() // read to the end or failed: nothing more to learn
	w.bytes += n
	switch {
	case err != nil && ctx.Err() != nil:
		return false
	case err != nil:
		w.fail(fmt.Errorf("GET %s: body: %w", url, err))
	case resp.StatusCode != http.StatusOK:
		w.fail(fmt.Errorf("GET %s: status %s", url, resp.Status))
	case resp.ContentLength >= 0 && n != resp.ContentLength:
		w.fail(fmt.Errorf("GET %s: %d bytes of %d", url, n, resp.ContentLength))
	default:
		w.requests++
		w.latencies = append(w.latencies, time.Since(start))
	}
	return true
}

// readAll reads r to its end with buf and returns the byte count.
func readAll(r io.Reader, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// summarize adds up the workers of a run that took d.
func summarize(ws []*worker, d time.Duration) Result {
	r := Result{Duration: d}
	var lat []time.Duration
	for _, w := range ws {
		r.Requests += w.requests
		r.Errors += w.errors
		r.Bytes += w.bytes
		lat = append(lat, w.latencies...)
		if w.firstErr != nil && r.FirstError == "" {
			r.FirstError = w.firstErr.Error()
		}
	}
	if d > 0 {
		r.ReqPerSec = float64(r.Requests) / d.Seconds()
		r.MBPerSec = float64(r.Bytes) / 1e6 / d.Seconds()
	}
	slices.Sort(lat)
	r.P50, r.P99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		r.Max = lat[len(lat)-1]
	}
	return r
}

// percentile returns the p-th percentile (nearest rank) of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// median returns the median of durations (sorting a copy).
func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return percentile(s, 50)
}
