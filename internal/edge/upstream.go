package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// ErrUpstreamDown means no upstream answered usefully: every one refused the
// connection, timed out or answered 5xx. It maps to 502 or 504, never to 404.
var ErrUpstreamDown = errors.New("upstream unavailable")

// StatusError is a final, non-failover status from an upstream (4xx, or an
// unexpected 3xx the client did not follow).
type StatusError struct {
	URL    string
	Status int
}

// Error names the upstream URL and its status.
func (e *StatusError) Error() string {
	return fmt.Sprintf("upstream %s: %d %s", e.URL, e.Status, http.StatusText(e.Status))
}

// timeoutError reports whether err is a timeout, so it maps to 504.
func timeoutError(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// pool is the ordered list of upstreams with failover. It is sticky: once
// the first upstream failed and another worked, requests go to the working one
// until stickyFor has passed, then the first is tried again. Safe for
// concurrent use.
type pool struct {
	bases     []*url.URL
	client    *http.Client
	stall     time.Duration // a body read idle this long is an error
	stickyFor time.Duration
	budget    time.Duration // no further upstream is tried once this much time went by; 0: no limit
	now       func() time.Time

	mu    sync.Mutex // guards cur, since
	cur   int        // index of the upstream that worked last
	since time.Time  // when cur moved off 0
}

// request describes one upstream call.
type request struct {
	method string
	url    func(base *url.URL) string
	header http.Header
	// ok reports whether a status is an answer to hand back (not failed over).
	// Nil: 2xx, 304 and 4xx are answers; 5xx fails over.
	ok func(status int) bool
}

// do sends req to the upstreams in order, starting with the sticky one, and
// returns the first answer. Connection errors, timeouts and 5xx fail over to
// the next upstream. The returned body is wrapped so that a read stalled for
// p.stall fails instead of hanging the fill. The caller closes the body.
func (p *pool) do(ctx context.Context, req request) (*http.Response, error) {
	p.mu.Lock()
	start := p.cur
	if start != 0 && p.now().Sub(p.since) >= p.stickyFor {
		start = 0
	}
	p.mu.Unlock()
	var errs []error
	timedOut := false
	final := true // every upstream answered the same 4xx: that is the answer
	var status *StatusError
	began := time.Now()
	for i := range p.bases {
		if i > 0 && p.budget > 0 && time.Since(began) >= p.budget {
			// pkg gives up after 30 s without a byte: better a quick 504 it
			// fails over from than an answer it no longer waits for.
			timedOut = true
			errs = append(errs, fmt.Errorf("failover budget of %s spent", p.budget))
			break
		}
		idx := (start + i) % len(p.bases)
		u := req.url(p.bases[idx])
		resp, err := p.try(ctx, req, u)
		if err == nil {
			p.mu.Lock()
			if idx != start {
				// Failed over: stick to this one for a while.
				p.since = p.now()
			}
			p.cur = idx
			p.mu.Unlock()
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && (status == nil || status.Status == se.Status) {
			status = se
		} else {
			final = false
		}
		timedOut = timedOut || timeoutError(err)
		errs = append(errs, err)
	}
	if final && status != nil {
		return nil, status
	}
	err := errors.Join(errs...)
	if timedOut {
		return nil, fmt.Errorf("%w: %w: %w", ErrUpstreamDown, context.DeadlineExceeded, err)
	}
	return nil, fmt.Errorf("%w: %w", ErrUpstreamDown, err)
}

func (p *pool) try(ctx context.Context, req request, u string) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	method := req.method
	if method == "" {
		method = http.MethodGet
	}
	hr, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range req.header {
		hr.Header[k] = v
	}
	resp, err := p.client.Do(hr)
	if err != nil {
		cancel()
		return nil, err
	}
	ok := req.ok
	if ok == nil {
		ok = func(s int) bool { return s < 500 }
	}
	if !ok(resp.StatusCode) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection if cheap
		resp.Body.Close()
		cancel()
		return nil, &StatusError{URL: u, Status: resp.StatusCode}
	}
	resp.Body = newStallReader(resp.Body, p.stall, cancel)
	return resp, nil
}

// stallReader fails a body whose reads make no progress for d: an upstream
// that stops sending mid-file must not hold its fill (and its clients) forever.
type stallReader struct {
	rc     io.ReadCloser
	d      time.Duration
	timer  *time.Timer
	cancel context.CancelFunc
}

func newStallReader(rc io.ReadCloser, d time.Duration, cancel context.CancelFunc) io.ReadCloser {
	s := &stallReader{rc: rc, d: d, cancel: cancel}
	if d > 0 {
		s.timer = time.AfterFunc(d, cancel)
	}
	return s
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.rc.Read(p)
	if n > 0 && s.timer != nil {
		s.timer.Reset(s.d)
	}
	return n, err
}

func (s *stallReader) Close() error {
	if s.timer != nil {
		s.timer.Stop()
	}
	err := s.rc.Close()
	s.cancel()
	return err
}
