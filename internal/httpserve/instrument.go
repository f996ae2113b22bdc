package httpserve

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// StallChunk is the largest piece of a response written under one write
// deadline: writes and sendfile calls are split into pieces of at most
// this many bytes, and each piece must go out within StallTimeout.
const StallChunk = 128 << 10

// extendEvery limits how often a write deadline is pushed forward: a
// deadline between StallTimeout-1s and StallTimeout away is good enough, and
// one SetWriteDeadline per second instead of one per write keeps the hot
// path to a clock read. (For a StallTimeout under 4s, a quarter of it.)
const extendEvery = time.Second

// ObserveFunc is called once a request has been served, with the final
// status, the number of body bytes written, and the response header (an
// application can pass labels to its metrics through it). It must be safe
// for concurrent use.
type ObserveFunc func(r *http.Request, status int, bytes int64, h http.Header)

// Instrument wraps h so that every request is logged to log (if not nil),
// reported to observe (if not nil), and written under a progress-based write
// deadline of stall (if zero, no deadline). The wrapped ResponseWriter keeps
// sendfile (io.ReaderFrom), http.Flusher and http.ResponseController
// (Unwrap) working.
func Instrument(h http.Handler, log *AccessLog, observe ObserveFunc, stall time.Duration) http.Handler {
	if log == nil && observe == nil && stall == 0 {
		return h
	}
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w := recorders.Get().(*recorder)
		*w = recorder{ResponseWriter: rw, stall: stall, every: min(extendEvery, stall/4)}
		if stall > 0 {
			// Reset the deadline a previous request on this connection left.
			w.setDeadline(start)
		}
		defer func() {
			// Deferred so that a handler aborting with http.ErrAbortHandler
			// is still logged (with what it had sent) before the panic goes on.
			status := w.status
			if status == 0 {
				status = http.StatusOK
			}
			if log != nil {
				log.Log(r, start, status, w.n)
			}
			if observe != nil {
				observe(r, status, w.n, rw.Header())
			}
			// net/http forbids using a ResponseWriter after ServeHTTP
			// returns, so nothing can still hold w.
			*w = recorder{}
			recorders.Put(w)
		}()
		h.ServeHTTP(w, r)
		if w.status == 0 {
			// Nothing written: net/http writes the implicit 200 after we
			// return, under the deadline; make sure it is a fresh one.
			w.extend()
		}
	})
}

// recorders recycles recorders: two allocations fewer per request.
var recorders = sync.Pool{New: func() any { return new(recorder) }}

// recorder records the status and body size of a response and extends its
// write deadline as bytes go out.
type recorder struct {
	http.ResponseWriter
	stall  time.Duration
	every  time.Duration // extend the deadline at most this often
	last   time.Time     // when the deadline was last set
	status int           // first final status written; 0 before
	n      int64         // body bytes written
}

func (w *recorder) setDeadline(now time.Time) {
	w.last = now
	// ErrNotSupported (a test recorder) just means no deadline. net/http's
	// writers have the method: asking them directly saves allocating a
	// ResponseController per request.
	if d, ok := w.ResponseWriter.(interface{ SetWriteDeadline(time.Time) error }); ok {
		_ = d.SetWriteDeadline(now.Add(w.stall))
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).SetWriteDeadline(now.Add(w.stall))
}

func (w *recorder) extend() {
	if w.stall == 0 {
		return
	}
	if now := time.Now(); now.Sub(w.last) >= w.every {
		w.setDeadline(now)
	}
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	// A handler that waited long before answering (a long-poll) must not
	// find the deadline set at the start of the request already passed
	// when net/http flushes a body-less response.
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var total int
	for len(p) > 0 {
		chunk := p
		if w.stall > 0 && len(chunk) > StallChunk {
			chunk = chunk[:StallChunk]
		}
		w.extend()
		n, err := w.ResponseWriter.Write(chunk)
		total += n
		w.n += int64(n)
		if err != nil {
			return total, err
		}
		p = p[n:]
	}
	return total, nil
}

// ReadFrom keeps sendfile: net/http's response is an io.ReaderFrom that
// hands an *os.File (or an *io.LimitedReader of one, which is what
// http.ServeContent passes) to the kernel. With a stall deadline the copy is
// split into StallChunk pieces, each one a LimitedReader directly over the
// file so the kernel path is kept.
func (w *recorder) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		n, err := io.Copy(writerOnly{w}, src)
		return n, err
	}
	if w.stall == 0 {
		n, err := rf.ReadFrom(src)
		w.n += n
		return n, err
	}
	inner, remaining := src, int64(-1)
	lr, isLimited := src.(*io.LimitedReader)
	if isLimited {
		inner, remaining = lr.R, lr.N
	}
	var total int64
	for remaining != 0 {
		chunk := int64(StallChunk)
		if remaining > 0 && remaining < chunk {
			chunk = remaining
		}
		w.extend()
		n, err := rf.ReadFrom(&io.LimitedReader{R: inner, N: chunk})
		total += n
		w.n += n
		if remaining > 0 {
			remaining -= n
			lr.N = remaining
		}
		if err != nil || n < chunk {
			return total, err
		}
	}
	return total, nil
}

func (w *recorder) Flush() {
	w.extend()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
		return
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // ErrNotSupported: nothing to flush
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides ReadFrom so io.Copy does not recurse into it.
type writerOnly struct{ io.Writer }
