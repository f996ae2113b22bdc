package httpserve

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
)

// MaxWholeBytes is the largest body WriteWhole sends in the same write(2)
// as its header; a bigger one goes out the ordinary way.
const MaxWholeBytes = 128 << 10

// Why one write. net/http writes a response through a 4 KiB bufio.Writer
// on the connection, so a 4 KiB file costs two write(2) calls (or a write
// of the header and a sendfile of the body), and on loopback and on a LAN
// each one is a full TCP send: two packets, two wake-ups of the client.
// That is most of the CPU a small file costs. WriteWhole asks the
// connection to hold what net/http writes until the response is complete
// and then sends it in one write(2).
//
// The holding is done by a wrapper around each *net.TCPConn that
// OneWriteListener accepts, found by the handler through the request's
// context (ConnContext). With HTTP/1 every write to a connection comes
// from the one goroutine that serves its requests in turn, which is also
// the goroutine of WriteWhole: the hold needs no lock. TLS connections
// (their *tls.Conn is what ConnContext sees), HTTP/2 and servers without
// the wrapper (httptest) simply write as usual.

// OneWriteListener wraps ln so that WriteWhole can send a response in one
// write(2) on the TCP connections it accepts (other connections are
// returned as they are). Pair it with ConnContext as the http.Server's
// ConnContext. Server does both.
func OneWriteListener(ln net.Listener) net.Listener { return oneWriteListener{ln} }

type oneWriteListener struct{ net.Listener }

func (l oneWriteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &holdConn{TCPConn: tc}, nil
	}
	return c, err
}

type connKey struct{}

// ConnContext is an http.Server.ConnContext that lets WriteWhole find a
// connection accepted by a OneWriteListener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if hc, ok := c.(*holdConn); ok {
		return context.WithValue(ctx, connKey{}, hc)
	}
	return ctx
}

// holdConn is a TCP connection whose writes can be held and sent as one.
// It embeds *net.TCPConn so that net/http still finds ReadFrom (sendfile)
// and CloseWrite on it.
type holdConn struct {
	*net.TCPConn
	held   *[]byte // non-nil while holding: the bytes written meanwhile
	writes int     // write(2) calls made for held bytes or passed through (tests)
}

var holdBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// hold starts holding writes.
func (c *holdConn) hold() {
	if c.held == nil {
		c.held = holdBufs.Get().(*[]byte)
	}
}

// release sends what was held, in one write, and stops holding.
func (c *holdConn) release() error {
	if c.held == nil {
		return nil
	}
	bp := c.held
	c.held = nil
	var err error
	if len(*bp) > 0 {
		c.writes++
		_, err = c.TCPConn.Write(*bp)
	}
	if cap(*bp) <= 2*MaxWholeBytes {
		*bp = (*bp)[:0]
		holdBufs.Put(bp)
	}
	return err
}

// Write implements io.Writer: while holding, it only appends to the held
// bytes (and cannot fail: the failure of the real write is release's).
func (c *holdConn) Write(p []byte) (int, error) {
	if c.held != nil {
		*c.held = append(*c.held, p...)
		return len(p), nil
	}
	c.writes++
	return c.TCPConn.Write(p)
}

// ReadFrom keeps sendfile; held bytes go first.
func (c *holdConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.release(); err != nil {
		return 0, err
	}
	return c.TCPConn.ReadFrom(r)
}

// WriteWhole answers r with status code, the header already set in
// w.Header(), and body (nil for HEAD), as one complete response: it sets
// Content-Length (unless the header has it) and writes the body. On an
// HTTP/1 connection accepted by a OneWriteListener, a body of at most
// MaxWholeBytes leaves in the same write(2) as the header: WriteWhole
// flushes the response before it returns, so the handler must not write
// anything after it. Elsewhere the response is written as usual.
//
// An error means the response was cut short (the header may be out): the
// handler should panic(http.ErrAbortHandler) so that the client sees a
// broken connection, not a short response.
func WriteWhole(w http.ResponseWriter, r *http.Request, code int, body []byte) error {
	h := w.Header()
	if _, ok := h["Content-Length"]; !ok {
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
	}
	c, _ := r.Context().Value(connKey{}).(*holdConn)
	if c == nil || r.ProtoMajor != 1 || len(body) > MaxWholeBytes {
		w.WriteHeader(code)
		if r.Method == http.MethodHead || len(body) == 0 {
			return nil
		}
		_, err := w.Write(body)
		return err
	}
	c.hold()
	w.WriteHeader(code)
	var err error
	if r.Method != http.MethodHead && len(body) > 0 {
		_, err = w.Write(body)
	}
	if err == nil {
		// Push everything net/http buffered down to the held bytes.
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // a failure would only be a held write's: there are none
		} else if ferr := http.NewResponseController(w).Flush(); !errors.Is(ferr, http.ErrNotSupported) {
			// A writer that cannot flush just costs the one write: what
			// is held goes now, net/http sends the rest when the handler
			// returns.
			err = ferr
		}
	}
	if rerr := c.release(); err == nil {
		err = rerr
	}
	return err
}
