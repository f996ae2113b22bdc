package loadgen

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HammerConfig configures Hammer.
type HammerConfig struct {
	// URLs are fetched in turn by every connection, each starting at a
	// different offset. Required.
	URLs []string
	// Conns is the number of concurrent keep-alive connections. If zero, 64.
	Conns int
	// Duration bounds the run. If zero and MaxRequests is zero, 10s.
	Duration time.Duration
	// MaxRequests stops the run after this many requests in all (answered
	// or failed). If zero, no limit.
	MaxRequests int64
	// BufferBytes is each connection's read buffer. If zero, 256 KiB.
	BufferBytes int
	// Client sends the requests. If nil, NewClient(Conns).
	Client *http.Client
}

// Hammer runs Conns connections fetching URLs in a loop until Duration or
// MaxRequests or ctx ends the run. Requests cut off by the deadline count
// neither as answered nor as errors, but their bytes count toward MB/s.
func Hammer(ctx context.Context, cfg HammerConfig) (Result, error) {
	if len(cfg.URLs) == 0 {
		return Result{}, ErrNoURLs
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 64
	}
	if cfg.Duration <= 0 && cfg.MaxRequests <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = defaultBufferBytes
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(cfg.Conns)
		defer cfg.Client.CloseIdleConnections()
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var issued atomic.Int64
	return run(cfg.Conns, cfg.BufferBytes, func(i int, w *worker) {
		next := i * len(cfg.URLs) / cfg.Conns
		for ctx.Err() == nil {
			if cfg.MaxRequests > 0 && issued.Add(1) > cfg.MaxRequests {
				return
			}
			if !w.get(ctx, cfg.Client, cfg.URLs[next]) {
				return
			}
			next = (next + 1) % len(cfg.URLs)
		}
	}), nil
}

// DistinctConfig configures Distinct.
type DistinctConfig struct {
	// URLs are fetched once each. Required.
	URLs []string
	// Concurrency is the number of requests in flight. If zero, 32.
	Concurrency int
	// BufferBytes is each connection's read buffer. If zero, 256 KiB.
	BufferBytes int
	// Client sends the requests. If nil, NewClient(Concurrency).
	Client *http.Client
}

// Distinct fetches every URL once, Concurrency at a time, and reports the
// rate: the cold-cache case of a proxy, when every request is a miss.
func Distinct(ctx context.Context, cfg DistinctConfig) (Result, error) {
	if len(cfg.URLs) == 0 {
		return Result{}, ErrNoURLs
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = defaultBufferBytes
	}
	if cfg.Client == nil {
		cfg.Client = NewClient(cfg.Concurrency)
		defer cfg.Client.CloseIdleConnections()
	}
	var next atomic.Int64
	res := run(min(cfg.Concurrency, len(cfg.URLs)), cfg.BufferBytes, func(_ int, w *worker) {
		for ctx.Err() == nil {
			j := next.Add(1) - 1
			if j >= int64(len(cfg.URLs)) {
				return
			}
			if !w.get(ctx, cfg.Client, cfg.URLs[j]) {
				return
			}
		}
	})
	return res, ctx.Err()
}

// run starts n workers, each with a read buffer of bufBytes, runs loop(i,
// w) for worker i, waits for them all and sums them up.
func run(n, bufBytes int, loop func(i int, w *worker)) Result {
	ws := make([]*worker, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ws {
		w := &worker{buf: make([]byte, bufBytes)}
		ws[i] = w
		wg.Go(func() { loop(i, w) })
	}
	wg.Wait()
	return summarize(ws, time.Since(start))
}
