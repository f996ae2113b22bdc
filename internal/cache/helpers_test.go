package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// newCache opens a cache in a fresh directory and closes it at the end.
func newCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func keyOf(b []byte) Key { return Key(digest.Sum(b)) }

// feed is an upstream body the test hands chunks to, one at a time.
type feed struct {
	ch     chan []byte // chunks; closed for EOF
	fail   chan error  // an error to return from Read
	closed chan struct{}
	once   sync.Once
	rest   []byte
}

func newFeed() *feed {
	return &feed{ch: make(chan []byte), fail: make(chan error, 1), closed: make(chan struct{})}
}

func (f *feed) Read(p []byte) (int, error) {
	if len(f.rest) == 0 {
		select {
		case b, ok := <-f.ch:
			if !ok {
				return 0, io.EOF
			}
			f.rest = b
		case err := <-f.fail:
			return 0, err
		case <-f.closed:
			return 0, errors.New("feed closed")
		}
	}
	n := copy(p, f.rest)
	f.rest = f.rest[n:]
	return n, nil
}

func (f *feed) Close() error { f.once.Do(func() { close(f.closed) }); return nil }

// send hands b to the fill; it returns when the fill took it (or the body was closed).
func (f *feed) send(b []byte) bool {
	select {
	case f.ch <- b:
		return true
	case <-f.closed:
		return false
	}
}

// upstream counts fetches and serves bodies made by body.
type upstream struct {
	fetches atomic.Int64
	body    func() io.ReadCloser
	meta    Meta
	err     error
}

func (u *upstream) fetch(ctx context.Context) (io.ReadCloser, Meta, error) {
	u.fetches.Add(1)
	if u.err != nil {
		return nil, Meta{}, u.err
	}
	m := u.meta
	if m.Size == 0 {
		m.Size = -1
	}
	return u.body(), m, nil
}

// staticUpstream serves b whole.
func staticUpstream(b []byte) *upstream {
	return &upstream{body: func() io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }}
}

// readAll reads a stream to its end with the streaming Reader.
func readAll(s *Stream) ([]byte, error) {
	return io.ReadAll(s.Reader(0))
}

// fillAndRead fills key from u and reads it whole.
func fillAndRead(t testing.TB, c *Cache, key Key, spec FillSpec) []byte {
	t.Helper()
	s, err := c.Fill(key, spec)
	if err != nil {
		t.Fatalf("Fill: %v", err)
	}
	defer s.Close()
	got, err := readAll(s)
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	return got
}

func specFor(b []byte, u *upstream) FillSpec {
	return FillSpec{Want: digest.Sum(b), Size: int64(len(b)), Fetch: u.fetch}
}

// abandon leaves c as a kill -9 would: no index compaction, no clean mark,
// and the directory lock released (by the kernel, in a real crash).
func abandon(c *Cache) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel(ErrClosed)
	c.wg.Wait()
	_ = c.jr.close()
	_ = c.unlock()
}
