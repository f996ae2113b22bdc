package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// HerdConfig configures Herd.
type HerdConfig struct {
	// URL is the one URL every client fetches. Required.
	URL string
	// Clients is the number of clients released together. If zero, 50.
	Clients int
	// SHA256, if not zero, is the digest every body must have.
	SHA256 digest.SHA256
	// Size, if positive, is the length every body must have.
	Size int64
	// HashClients, if positive, is how many clients (the first ones) hash
	// their body; the others check only status and length. If zero, all.
	// On a small machine, hashing 50 copies of a big file costs the
	// clients more CPU than serving them costs the server under test.
	HashClients int
	// BufferBytes is each client's read buffer. If zero, 256 KiB.
	BufferBytes int
	// Client sends the requests. If nil, NewClient(Clients): one
	// connection per client.
	Client *http.Client
}

// ClientResult is one client of a herd. Times count from the release of
// the barrier.
type ClientResult struct {
	TTFB   time.Duration `json:"ttfb_ns"`  // first response byte
	Total  time.Duration `json:"total_ns"` // last body byte
	Bytes  int64         `json:"bytes"`
	Status int           `json:"status"`
	Err    string        `json:"err,omitempty"` // empty: 200, whole body, digest and size as expected
}

// HerdResult sums up a herd. Medians and maxima are over the clients that
// succeeded.
type HerdResult struct {
	Clients     []ClientResult `json:"clients"`
	OK          int            `json:"ok"`
	Failed      int            `json:"failed"`
	MedianTTFB  time.Duration  `json:"median_ttfb_ns"`
	MaxTTFB     time.Duration  `json:"max_ttfb_ns"`
	MedianTotal time.Duration  `json:"median_total_ns"`
	MaxTotal    time.Duration  `json:"max_total_ns"`
	FirstError  string         `json:"first_error,omitempty"`
}

// Herd starts Clients goroutines, each with its request ready, holds them
// at a barrier, releases them at one instant on URL, and times each one's
// first byte and last byte from that instant. Every body is hashed and,
// when cfg says so, checked against SHA256 and Size.
func Herd(ctx context.Context, cfg HerdConfig) (HerdResult, error) {
	if cfg.URL == "" {
		return HerdResult{}, ErrNoURLs
	}
	if cfg.Clients <= 0 {
		cfg.Clients = 50
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = defaultBufferBytes
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(cfg.Clients)
		defer cfg.Client.CloseIdleConnections()
	}
	res := HerdResult{Clients: make([]ClientResult, cfg.Clients)}
	var ready, done sync.WaitGroup
	release := make(chan struct{})
	var t0 time.Time // written before release is closed, read after
	ready.Add(cfg.Clients)
	for i := range res.Clients {
		done.Go(func() {
			cr := &res.Clients[i]
			var first time.Time
			trace := &httptrace.ClientTrace{GotFirstResponseByte: func() { first = time.Now() }}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, cfg.URL, nil)
			buf := make([]byte, cfg.BufferBytes)
			ready.Done()
			<-release
			if err == nil {
				err = fetchVerify(cfg, req, cr, buf, cfg.HashClients <= 0 || i < cfg.HashClients)
			}
			cr.Total = time.Since(t0)
			if !first.IsZero() {
				cr.TTFB = first.Sub(t0)
			}
			if err != nil {
				cr.Err = err.Error()
			}
		})
	}
	ready.Wait()
	t0 = time.Now()
	close(release)
	done.Wait()

	var ttfb, total []time.Duration
	for _, c := range res.Clients {
		if c.Err != "" {
			res.Failed++
			if res.FirstError == "" {
				res.FirstError = c.Err
			}
			continue
		}
		res.OK++
		ttfb = append(ttfb, c.TTFB)
		total = append(total, c.Total)
		res.MaxTTFB = max(res.MaxTTFB, c.TTFB)
		res.MaxTotal = max(res.MaxTotal, c.Total)
	}
	res.MedianTTFB, res.MedianTotal = median(ttfb), median(total)
	return res, ctx.Err()
}

// fetchVerify sends req, reads the body into cr, and checks it, hashing
// it if hash is set.
func fetchVerify(cfg HerdConfig, req *http.Request, cr *ClientResult, buf []byte, hash bool) error {
	resp, err := cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	cr.Status = resp.StatusCode
	var body io.Reader = resp.Body
	h := digest.New()
	if hash {
		body = io.TeeReader(resp.Body, h)
	}
	n, err := readAll(body, buf)
	cr.Bytes = n
	switch got := digest.FromHash(h); {
	case err != nil:
		return fmt.Errorf("body after %d bytes: %w", n, err)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %s", resp.Status)
	case cfg.Size > 0 && n != cfg.Size:
		return &digest.SizeError{Want: cfg.Size, Got: n}
	case hash && !cfg.SHA256.IsZero() && got != cfg.SHA256:
		return &digest.MismatchError{Want: cfg.SHA256, Got: got}
	}
	return nil
}

// ErrTimeout is returned by WaitBody when its timeout passes first.
var ErrTimeout = errors.New("loadgen: timed out")

// WaitBody polls url every interval (if zero, 5ms) until it answers 200
// with a body whose sha256 is want, and returns the time it first did.
// It gives up with ErrTimeout after timeout (if zero, 60s).
func WaitBody(ctx context.Context, c *http.Client, url string, want digest.SHA256, interval, timeout time.Duration) (time.Time, error) {
	if interval <= 0 {
		interval = 5 * time.Millisecond
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	if c == nil {
		c = NewClient(1)
		defer c.CloseIdleConnections()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var buf bytes.Buffer
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return time.Time{}, err
		}
		if resp, err := c.Do(req); err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(resp.Body)
			_ = resp.Body.Close() // fully read
			if err == nil && resp.StatusCode == http.StatusOK && digest.Sum(buf.Bytes()) == want {
				return time.Now(), nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline.C:
			return time.Time{}, fmt.Errorf("wait for %s: %w", url, ErrTimeout)
		case <-tick.C:
		}
	}
}
