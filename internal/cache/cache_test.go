package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

func TestFillThenGet(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(300<<10, 1)
	u := staticUpstream(b)
	u.meta = Meta{ContentType: "application/x-pkg"}
	key := keyOf(b)
	if got := fillAndRead(t, c, key, specFor(b, u)); !bytes.Equal(got, b) {
		t.Fatalf("stream returned %d bytes, want %d equal", len(got), len(b))
	}
	// The commit happens after the bytes are released: wait for the flight.
	c.wg.Wait()
	o, err := c.Get(key)
	if err != nil {
		t.Fatalf("Get after fill: %v", err)
	}
	defer o.Close()
	if o.Size() != int64(len(b)) || o.Meta().SHA256 != digest.Sum(b) || o.Meta().ContentType != "application/x-pkg" || o.Meta().Stored.IsZero() {
		t.Errorf("Get meta = %+v", o.Meta())
	}
	got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
	if err != nil || !bytes.Equal(got, b) {
		t.Errorf("Object bytes differ (err %v)", err)
	}
	fi, err := o.File().Stat()
	if err != nil || fi.Mode().Perm() != 0o444 {
		t.Errorf("data file mode = %v, %v; want 0444", fi.Mode(), err)
	}
	s, err := c.Fill(key, specFor(b, u))
	if err != nil || !s.Hit() {
		t.Fatalf("Fill of a cached key: hit=%v err=%v", s != nil && s.Hit(), err)
	}
	if got, err := readAll(s); err != nil || !bytes.Equal(got, b) {
		t.Errorf("hit stream differs (err %v)", err)
	}
	s.Close()
	if n := u.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 1 || st.Entries != 1 || st.BytesUsed != int64(len(b)) || st.FillsInFlight != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if _, err := c.Get(Key{1}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func TestFillCollapsesConcurrentReaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool // Want and Size known
	}{
		{"verified", true},
		{"unknown size", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			b := randBytes(1<<20+12345, 2)
			fd := newFeed()
			u := &upstream{body: func() io.ReadCloser { return fd }}
			spec := FillSpec{Size: -1, Fetch: u.fetch}
			if tc.want {
				spec = specFor(b, u)
			}
			key := keyOf(b)
			const readers = 50
			streams := make([]*Stream, readers)
			for i := range streams {
				s, err := c.Fill(key, spec)
				if err != nil {
					t.Fatalf("Fill: %v", err)
				}
				streams[i] = s
			}
			var wg sync.WaitGroup
			errs := make(chan error, readers)
			for i, s := range streams {
				wg.Go(func() {
					defer s.Close()
					var got []byte
					var err error
					if i%2 == 0 {
						got, err = readAll(s)
					} else { // strict ReadAt in odd sizes
						got, err = io.ReadAll(io.NewSectionReader(s, 0, 1<<40))
					}
					if err == nil && !bytes.Equal(got, b) {
						err = errors.New("bytes differ")
					}
					errs <- err
				})
			}
			for off := 0; off < len(b); off += 100 << 10 {
				fd.send(b[off:min(off+100<<10, len(b))])
			}
			close(fd.ch)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("reader: %v", err)
				}
			}
			if n := u.fetches.Load(); n != 1 {
				t.Errorf("fetches = %d, want 1", n)
			}
			if st := c.Stats(); st.Collapsed != readers-1 || st.Misses != 1 {
				t.Errorf("Stats: collapsed %d misses %d, want %d, 1", st.Collapsed, st.Misses, readers-1)
			}
			c.wg.Wait()
			if o, err := c.Get(key); err != nil {
				t.Errorf("Get after collapsed fill: %v", err)
			} else {
				o.Close()
			}
		})
	}
}

// TestStreamBytesAsTheyArrive checks that a reader gets each chunk while the
// upstream is still blocked before the next one, and that the held-back tail
// of a verified object is released only after verification.
func TestStreamBytesAsTheyArrive(t *testing.T) {
	const chunk = 40 << 10
	for _, tc := range []struct {
		name     string
		verified bool
		holdBack int64
	}{
		{"unverified", false, 0},
		{"verified", true, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{HoldBack: 64 << 10})
			b := randBytes(10*chunk, 3)
			fd := newFeed()
			u := &upstream{body: func() io.ReadCloser { return fd }}
			spec := FillSpec{Size: -1, Fetch: u.fetch}
			if tc.verified {
				spec = specFor(b, u)
			}
			s, err := c.Fill(keyOf(b), spec)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			r := s.Reader(0)
			var got []byte
			buf := make([]byte, 1<<20)
			for sent := chunk; sent <= len(b); sent += chunk {
				fd.send(b[sent-chunk : sent])
				avail := int64(sent) - tc.holdBack
				if tc.verified && sent == len(b) {
					break // the rest needs EOF and verification
				}
				for int64(len(got)) < avail {
					n, err := r.Read(buf)
					if err != nil {
						t.Fatalf("Read after %d bytes sent: %v", sent, err)
					}
					got = append(got, buf[:n]...)
				}
				if int64(len(got)) != max(avail, 0) {
					t.Fatalf("read %d bytes with %d sent, want %d", len(got), sent, avail)
				}
				// Range inside what arrived: answered at once.
				if avail >= 20 {
					p := make([]byte, 10)
					if _, err := s.ReadAt(p, avail-20); err != nil || !bytes.Equal(p, b[avail-20:avail-10]) {
						t.Fatalf("ReadAt inside arrived bytes: %v", err)
					}
				}
			}
			close(fd.ch)
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if got = append(got, rest...); !bytes.Equal(got, b) {
				t.Errorf("stream bytes differ")
			}
		})
	}
}

func TestFillFailsForEveryReader(t *testing.T) {
	good := randBytes(200<<10, 4)
	bad := bytes.Clone(good)
	bad[len(bad)-1] ^= 1
	long := append(bytes.Clone(good), 'x')
	cases := []struct {
		name       string
		spec       func(u *upstream) FillSpec
		body       []byte
		cut        bool // upstream dies after body
		verifyFail bool
	}{
		{"tampered", func(u *upstream) FillSpec { return specFor(good, u) }, bad, false, true},
		{"too long", func(u *upstream) FillSpec { return specFor(good, u) }, long, false, true},
		{"too short", func(u *upstream) FillSpec { return specFor(good, u) }, good[:len(good)-1], false, true},
		{"too long, size only", func(u *upstream) FillSpec {
			return FillSpec{Size: int64(len(good)), Fetch: u.fetch}
		}, long, false, true},
		{"tampered, no-store", func(u *upstream) FillSpec {
			s := specFor(good, u)
			s.NoStore = true
			return s
		}, bad, false, true},
		{"dies mid-file", func(u *upstream) FillSpec { return specFor(good, u) }, good[:100<<10], true, false},
		{"dies mid-file, unverified", func(u *upstream) FillSpec { return FillSpec{Size: -1, Fetch: u.fetch} }, good[:100<<10], true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			fd := newFeed()
			u := &upstream{body: func() io.ReadCloser { return fd }}
			spec := tc.spec(u)
			key := keyOf(good)
			var streams []*Stream
			for range 5 {
				s, err := c.Fill(key, spec)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				streams = append(streams, s)
			}
			type result struct {
				n   int
				err error
			}
			results := make(chan result, len(streams))
			for _, s := range streams {
				go func() {
					got, err := readAll(s)
					results <- result{len(got), err}
				}()
			}
			fd.send(tc.body)
			if tc.cut {
				fd.fail <- io.ErrUnexpectedEOF
			} else {
				close(fd.ch)
			}
			for range streams {
				r := <-results
				if r.err == nil {
					t.Errorf("reader got %d bytes and no error", r.n)
				}
				if !spec.Want.IsZero() && r.n > len(good)-64<<10 {
					t.Errorf("reader got %d bytes of a bad fill, more than size-holdback %d", r.n, len(good)-64<<10)
				}
				var me *digest.MismatchError
				var se *digest.SizeError
				if tc.verifyFail && !errors.As(r.err, &me) && !errors.As(r.err, &se) {
					t.Errorf("reader error = %v, want a mismatch or size error", r.err)
				}
			}
			c.wg.Wait()
			if _, err := c.Get(key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after failed fill = %v, want ErrNotFound", err)
			}
			st := c.Stats()
			if want := int64(0); tc.verifyFail {
				want = 1
				if st.VerifyFailures != want {
					t.Errorf("VerifyFailures = %d, want %d", st.VerifyFailures, want)
				}
			}
			if st.FillErrors != 1 || st.BytesUsed != 0 || st.FillsInFlight != 0 {
				t.Errorf("Stats = %+v", st)
			}
			assertEmptyTmp(t, c)
			// The next Fill fetches again and succeeds.
			u2 := staticUpstream(good)
			if got := fillAndRead(t, c, key, specFor(good, u2)); !bytes.Equal(got, good) || u2.fetches.Load() != 1 {
				t.Errorf("refill: %d bytes, %d fetches", len(got), u2.fetches.Load())
			}
		})
	}
}

func assertEmptyTmp(t *testing.T, c *Cache) {
	t.Helper()
	names, err := readDirNames(c.tmpDir)
	if err != nil || len(names) != 0 {
		t.Errorf("tmp/ holds %v (%v), want nothing", names, err)
	}
}

func TestFillStall(t *testing.T) {
	c := newCache(t, Config{StallTimeout: 50 * time.Millisecond})
	b := randBytes(100<<10, 5)
	fd := newFeed()
	u := &upstream{body: func() io.ReadCloser { return fd }}
	s, err := c.Fill(keyOf(b), specFor(b, u))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fd.send(b[:1000])
	if _, err := readAll(s); !errors.Is(err, ErrStalled) {
		t.Errorf("read of a stalled fill = %v, want ErrStalled", err)
	}
}

func TestReaderCloseDoesNotCancelFill(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(500<<10, 6)
	fd := newFeed()
	u := &upstream{body: func() io.ReadCloser { return fd }}
	key := keyOf(b)
	s1, _ := c.Fill(key, specFor(b, u))
	s2, _ := c.Fill(key, specFor(b, u))
	fd.send(b[:200<<10])
	p := make([]byte, 1000)
	if _, err := s1.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	s1.Close() // a client hangs up
	if _, err := s1.ReadAt(p, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want ErrClosed", err)
	}
	fd.send(b[200<<10 : 300<<10])
	s2.Close() // the last client hangs up too: the fill goes on and is kept
	fd.send(b[300<<10:])
	close(fd.ch)
	c.wg.Wait()
	o, err := c.Get(key)
	if err != nil {
		t.Fatalf("Get after all readers left: %v", err)
	}
	o.Close()
}

func TestCloseStopsFills(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	b := randBytes(100<<10, 7)
	fd := newFeed()
	u := &upstream{body: func() io.ReadCloser { return fd }}
	s, _ := c.Fill(keyOf(b), specFor(b, u))
	defer s.Close()
	fd.send(b[:10])
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := readAll(s); !errors.Is(err, ErrClosed) {
		t.Errorf("read after cache Close = %v, want ErrClosed", err)
	}
	if _, err := c.Fill(Key{}, specFor(b, u)); !errors.Is(err, ErrClosed) {
		t.Errorf("Fill after Close = %v, want ErrClosed", err)
	}
}

func TestEvictLeastRecentlyUsed(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 3000})
	objs := make([][]byte, 6)
	for i := range objs {
		objs[i] = randBytes(1000, uint64(100+i))
	}
	fillN := func(i int) {
		t.Helper()
		fillAndRead(t, c, keyOf(objs[i]), specFor(objs[i], staticUpstream(objs[i])))
		c.wg.Wait()
	}
	has := func(i int) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.idx[keyOf(objs[i])]
		return ok
	}
	fillN(0)
	fillN(1)
	fillN(2)
	o, err := c.Get(keyOf(objs[0])) // 0 is now the most recent, and pinned
	if err != nil {
		t.Fatal(err)
	}
	fillN(3) // evicts 1
	if !has(0) || has(1) || !has(2) || !has(3) {
		t.Fatalf("after 4th fill: has 0..3 = %v %v %v %v, want true false true true", has(0), has(1), has(2), has(3))
	}
	fillN(4) // evicts 2 (0 is newer)
	fillN(5) // evicts 3; 0 is pinned, and older than 4 and 5 by now
	if !has(0) || has(2) || has(3) || !has(4) || !has(5) {
		t.Errorf("after 6th fill: has = %v %v %v %v %v", has(0), has(2), has(3), has(4), has(5))
	}
	if _, err := os.Stat(c.dataPath(keyOf(objs[1]))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("evicted data file still there: %v", err)
	}
	o.Close()
	if st := c.Stats(); st.Evictions != 3 || st.BytesUsed != 3000 || st.Entries != 3 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestPinnedEntryIsNotEvicted(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 2000})
	objs := make([][]byte, 4)
	for i := range objs {
		objs[i] = randBytes(1000, uint64(20+i))
	}
	fillN := func(i int) {
		t.Helper()
		fillAndRead(t, c, keyOf(objs[i]), specFor(objs[i], staticUpstream(objs[i])))
		c.wg.Wait()
	}
	fillN(0)
	fillN(1)
	oa, _ := c.Get(keyOf(objs[0]))
	ob, _ := c.Get(keyOf(objs[1]))
	// Everything else pinned: the new entry is the only one that can go.
	fillN(2)
	for i, o := range []*Object{oa, ob} {
		p := make([]byte, 1000)
		if _, err := o.ReadAt(p, 0); err != nil || !bytes.Equal(p, objs[i]) {
			t.Errorf("pinned object %d: %v", i, err)
		}
		if _, err := os.Stat(c.dataPath(keyOf(objs[i]))); err != nil {
			t.Errorf("pinned object %d: %v", i, err)
		}
	}
	if st := c.Stats(); st.Evictions != 1 || st.BytesUsed != 2000 || st.Entries != 2 {
		t.Errorf("with pins: Stats = %+v", st)
	}
	oa.Close()
	fillN(3) // 0 is the least recently used unpinned entry now
	if _, err := c.Get(keyOf(objs[0])); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of unpinned LRU entry = %v, want ErrNotFound", err)
	}
	ob.Close()
	if o, err := c.Get(keyOf(objs[1])); err != nil {
		t.Errorf("Get of formerly pinned entry: %v", err)
	} else {
		o.Close()
	}
}

func TestFillReservationEvicts(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 3000})
	a, bb := randBytes(1000, 11), randBytes(1000, 12)
	fillAndRead(t, c, keyOf(a), specFor(a, staticUpstream(a)))
	fillAndRead(t, c, keyOf(bb), specFor(bb, staticUpstream(bb)))
	c.wg.Wait()
	big := randBytes(1500, 13)
	fd := newFeed()
	u := &upstream{body: func() io.ReadCloser { return fd }}
	s, _ := c.Fill(keyOf(big), specFor(big, u))
	defer s.Close()
	fd.send(big[:10]) // the fill has reserved its size by now
	if st := c.Stats(); st.Evictions != 1 || st.BytesUsed != 2500 || st.FillsInFlight != 1 {
		t.Errorf("during fill: Stats = %+v", st)
	}
	fd.send(big[10:])
	close(fd.ch)
	if got, err := readAll(s); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read: %v", err)
	}
}

func TestPassThrough(t *testing.T) {
	big := randBytes(3<<20+777, 14)
	enospc := func(after int) func(string) error {
		var mu sync.Mutex
		n := 0
		return func(step string) error {
			mu.Lock()
			defer mu.Unlock()
			if step == "write" {
				if n++; n > after {
					return syscall.ENOSPC
				}
			}
			return nil
		}
	}
	cases := []struct {
		name       string
		cfg        Config
		noStore    bool
		metaNo     bool
		verified   bool
		diskErrors int64
	}{
		{"no-store", Config{}, true, false, true, 0},
		{"upstream no-store", Config{}, false, true, false, 0},
		{"bigger than the cache", Config{MaxBytes: 1 << 20}, false, false, true, 0},
		{"disk full mid-file", Config{Fault: enospc(3)}, false, false, true, 1},
		{"disk full mid-file, unverified", Config{Fault: enospc(2)}, false, false, false, 1},
		{"disk full at create", Config{Fault: func(s string) error {
			if s == "create" {
				return syscall.ENOSPC
			}
			return nil
		}}, false, false, true, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.PassThroughBytes = 1 // raised to the minimum: forces wrap-around and waits
			c := newCache(t, tc.cfg)
			fd := newFeed()
			u := &upstream{body: func() io.ReadCloser { return fd }, meta: Meta{NoStore: tc.metaNo}}
			spec := FillSpec{Size: -1, Fetch: u.fetch, NoStore: tc.noStore}
			if tc.verified {
				spec = specFor(big, u)
				spec.NoStore = tc.noStore
			}
			key := keyOf(big)
			const readers = 4
			var wg sync.WaitGroup
			for i := range readers {
				s, err := c.Fill(key, spec)
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					defer s.Close()
					var got []byte
					var err error
					if i%2 == 0 {
						got, err = readAll(s)
					} else {
						got, err = io.ReadAll(io.NewSectionReader(s, 0, 1<<40))
					}
					if err != nil || !bytes.Equal(got, big) {
						t.Errorf("reader %d: %d bytes, %v", i, len(got), err)
					}
				})
			}
			go func() {
				for off := 0; off < len(big); off += 64 << 10 {
					if !fd.send(big[off:min(off+64<<10, len(big))]) {
						return
					}
				}
				close(fd.ch)
			}()
			wg.Wait()
			c.wg.Wait()
			if _, err := c.Get(key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after pass-through = %v, want ErrNotFound", err)
			}
			st := c.Stats()
			if st.PassThrough != 1 || st.DiskErrors != tc.diskErrors || st.FillErrors != 0 || st.BytesUsed != 0 || u.fetches.Load() != 1 {
				t.Errorf("Stats = %+v, fetches %d", st, u.fetches.Load())
			}
			assertEmptyTmp(t, c)
		})
	}
}

// TestPassThroughLastReaderLeaves checks that a fill that keeps nothing
// stops when nobody reads it any more, and a later Fill starts afresh.
func TestPassThroughLastReaderLeaves(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(100<<10, 15)
	fd := newFeed()
	u := &upstream{body: func() io.ReadCloser { return fd }}
	spec := specFor(b, u)
	spec.NoStore = true
	s, _ := c.Fill(keyOf(b), spec)
	fd.send(b[:10])
	s.Close()
	c.wg.Wait() // the fill ends: its body was closed
	if st := c.Stats(); st.FillsInFlight != 0 || st.FillErrors != 1 {
		t.Errorf("Stats = %+v", st)
	}
	u2 := staticUpstream(b)
	if got := fillAndRead(t, c, keyOf(b), specFor(b, u2)); !bytes.Equal(got, b) {
		t.Error("refill differs")
	}
}

func TestUpdateMeta(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, Config{Dir: dir})
	b := []byte("plain mode file")
	key := keyOf([]byte("url:/x"))
	u := staticUpstream(b)
	u.meta = Meta{ETag: `"v1"`, Generation: 1}
	fillAndRead(t, c, key, FillSpec{Size: -1, Fetch: u.fetch})
	c.wg.Wait()
	if o, err := c.Get(key); err != nil || o.Meta().Generation != 1 { // remembers the Meta
		t.Fatalf("Get before UpdateMeta: %v", err)
	} else {
		o.Close()
	}
	if err := c.UpdateMeta(key, Meta{ETag: `"v1"`, Generation: 2, Size: 99}); err != nil {
		t.Fatal(err)
	}
	if o, err := c.Get(key); err != nil || o.Meta().Generation != 2 {
		t.Errorf("Get after UpdateMeta: %v, %+v", err, o.Meta())
	} else {
		o.Close()
	}
	if err := c.UpdateMeta(Key{9}, Meta{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("UpdateMeta(missing) = %v, want ErrNotFound", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := newCache(t, Config{Dir: dir})
	o, err := c2.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if m := o.Meta(); m.Generation != 2 || m.Size != int64(len(b)) || m.ETag != `"v1"` || m.Stored.IsZero() {
		t.Errorf("Meta after UpdateMeta and restart = %+v", m)
	}
}

func TestObjectServeContent(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(100<<10, 16)
	fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b)))
	c.wg.Wait()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := c.Get(keyOf(b))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer o.Close()
		http.ServeContent(w, r, "", o.Meta().Stored, o.File())
	}))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL, nil)
	req.Header.Set("Range", "bytes=1000-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || err != nil || !bytes.Equal(got, b[1000:]) {
		t.Errorf("Range GET: %s, %d bytes, %v", resp.Status, len(got), err)
	}
}

func TestRestartKeepsEntriesAndOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		clean bool
	}{{"clean", true}, {"crash", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c, err := New(Config{Dir: dir, MaxBytes: 4000})
			if err != nil {
				t.Fatal(err)
			}
			objs := make([][]byte, 4)
			for i := range objs {
				objs[i] = randBytes(1000, uint64(200+i))
				fillAndRead(t, c, keyOf(objs[i]), specFor(objs[i], staticUpstream(objs[i])))
				c.wg.Wait()
			}
			o, _ := c.Get(keyOf(objs[0])) // 0 most recent; 1 least
			o.Close()
			if tc.clean {
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
			} else {
				abandon(c)
			}
			c2 := newCache(t, Config{Dir: dir, MaxBytes: 4000})
			<-c2.reconcileDone
			if st := c2.Stats(); st.Entries != 4 || st.BytesUsed != 4000 {
				t.Fatalf("after restart: Stats = %+v", st)
			}
			extra := randBytes(1000, 300)
			fillAndRead(t, c2, keyOf(extra), specFor(extra, staticUpstream(extra)))
			c2.wg.Wait()
			if _, err := c2.Get(keyOf(objs[1])); !errors.Is(err, ErrNotFound) {
				t.Errorf("least recently used entry survived: %v", err)
			}
			for _, i := range []int{0, 2, 3} {
				o, err := c2.Get(keyOf(objs[i]))
				if err != nil {
					t.Errorf("Get(%d) after restart: %v", i, err)
					continue
				}
				got, _ := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
				if !bytes.Equal(got, objs[i]) {
					t.Errorf("entry %d differs after restart", i)
				}
				o.Close()
			}
		})
	}
}

// TestRestartReconcilesAfterCrash damages the directory the ways a crash
// can and checks that New repairs it.
func TestRestartReconcilesAfterCrash(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	objs := make([][]byte, 3)
	for i := range objs {
		objs[i] = randBytes(5000, uint64(400+i))
		fillAndRead(t, c, keyOf(objs[i]), specFor(objs[i], staticUpstream(objs[i])))
		c.wg.Wait()
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Crash leftovers: a fill's temp file, an index temp, a Meta whose data
	// never got renamed, an entry deleted without its journal record, and
	// a committed entry whose add record was lost (index from before it).
	index, _ := os.ReadFile(filepath.Join(dir, "index"))
	os.WriteFile(filepath.Join(dir, "tmp", "junk.123"), []byte("partial"), 0o644)
	os.WriteFile(filepath.Join(dir, ".tmp-index.123"), []byte("partial"), 0o644)
	orphan := Key{0xab, 1}
	os.WriteFile(filepath.Join(dir, "objects", "ab", orphan.String()+".meta"), []byte(`{"Size":3}`), 0o444)
	c1 := &Cache{objDir: filepath.Join(dir, "objects")}
	os.Remove(c1.dataPath(keyOf(objs[0])))
	c, err = New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	late := randBytes(7000, 500)
	fillAndRead(t, c, keyOf(late), specFor(late, staticUpstream(late)))
	c.wg.Wait()
	abandon(c) // without Close...
	// ...with the add lost (a failed append: this boot, so the files are
	// whole) and a torn record.
	var open [recSize]byte
	key := readBootID().key()
	encodeRecord(&open, opOpen, key[:], 0)
	torn := append(index[:len(index)-recSize:len(index)-recSize], open[:]...)
	os.WriteFile(filepath.Join(dir, "index"), append(torn, make([]byte, 7)...), 0o644)

	c2 := newCache(t, Config{Dir: dir})
	<-c2.reconcileDone
	if st := c2.Stats(); st.Entries != 3 || st.BytesUsed != 10000+7000 {
		t.Errorf("after reconcile: Stats = %+v", st)
	}
	for _, b := range [][]byte{objs[1], objs[2], late} {
		o, err := c2.Get(keyOf(b))
		if err != nil {
			t.Errorf("Get after reconcile: %v", err)
			continue
		}
		got, _ := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if !bytes.Equal(got, b) {
			t.Error("bytes differ after reconcile")
		}
		o.Close()
	}
	if _, err := c2.Get(keyOf(objs[0])); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a vanished entry = %v", err)
	}
	for _, p := range []string{
		filepath.Join(dir, "tmp", "junk.123"),
		filepath.Join(dir, ".tmp-index.123"),
		filepath.Join(dir, "objects", "ab", orphan.String()+".meta"),
	} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived New: %v", p, err)
		}
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, Config{Dir: dir})
	if _, err := New(Config{Dir: dir}); !errors.Is(err, ErrLocked) {
		t.Errorf("second New on one Dir = %v, want ErrLocked", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	newCache(t, Config{Dir: dir})
}

func TestEmptyObject(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec func(u *upstream) FillSpec
	}{
		{"verified", func(u *upstream) FillSpec { return specFor(nil, u) }},
		{"unknown size", func(u *upstream) FillSpec { return FillSpec{Size: -1, Fetch: u.fetch} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			key := keyOf(nil)
			if got := fillAndRead(t, c, key, tc.spec(staticUpstream(nil))); len(got) != 0 {
				t.Errorf("read %d bytes of an empty object", len(got))
			}
			c.wg.Wait()
			o, err := c.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			defer o.Close()
			if o.Size() != 0 {
				t.Errorf("Size = %d", o.Size())
			}
		})
	}
}

func TestSlowReaderDoesNotSlowFill(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(2<<20, 31)
	key := keyOf(b)
	slow, err := c.Fill(key, specFor(b, staticUpstream(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	c.wg.Wait() // the fill completes and commits while slow has read nothing
	if o, err := c.Get(key); err != nil {
		t.Fatalf("Get while a reader lags: %v", err)
	} else {
		o.Close()
	}
	if got, err := readAll(slow); err != nil || !bytes.Equal(got, b) {
		t.Errorf("slow reader: %d bytes, %v", len(got), err)
	}
}

// TestReconcileWhileFilling runs fills (some on keys the crash left
// half-committed) while the background reconcile repairs the directory.
func TestReconcileWhileFilling(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	<-c.reconcileDone
	objs := make([][]byte, 40)
	for i := range objs {
		objs[i] = randBytes(1000+i, uint64(600+i))
	}
	for _, b := range objs[:20] {
		fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b)))
	}
	c.wg.Wait()
	abandon(c)
	// Half-committed leftovers of the next 10: a Meta without data.
	for _, b := range objs[20:30] {
		k := keyOf(b)
		os.WriteFile(c.metaPath(k), []byte(`{"Size":1}`), 0o444)
	}
	c2 := newCache(t, Config{Dir: dir})
	var wg sync.WaitGroup
	for _, b := range objs[10:] {
		wg.Go(func() {
			s, err := c2.Fill(keyOf(b), specFor(b, staticUpstream(b)))
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			if got, err := readAll(s); err != nil || !bytes.Equal(got, b) {
				t.Errorf("fill during reconcile: %v", err)
			}
		})
	}
	wg.Wait()
	<-c2.reconcileDone
	c2.wg.Wait()
	for i, b := range objs {
		o, err := c2.Get(keyOf(b))
		if err != nil {
			t.Errorf("Get(%d) after reconcile: %v", i, err)
			continue
		}
		got, _ := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if !bytes.Equal(got, b) {
			t.Errorf("entry %d differs", i)
		}
		o.Close()
	}
	if st := c2.Stats(); st.Entries != int64(len(objs)) {
		t.Errorf("Entries = %d, want %d", st.Entries, len(objs))
	}
}

// TestPassThroughRangeFarAhead reads a pass-through fill from an offset far
// beyond its memory window while another reader starts at 0.
func TestPassThroughRangeFarAhead(t *testing.T) {
	c := newCache(t, Config{PassThroughBytes: 1})
	b := randBytes(3<<20, 32)
	u := staticUpstream(b)
	spec := specFor(b, u)
	spec.NoStore = true
	key := keyOf(b)
	// Every client joins before any reads: a pass-through fill cannot run
	// ahead of its readers, so it is still in flight for all three (had
	// the first reader started at once, it could drain the whole fill
	// before the next Fill on a loaded machine, which then fetches again).
	offs := []int64{0, 2 << 20, 3<<20 - 10}
	streams := make([]*Stream, len(offs))
	for i := range offs {
		s, err := c.Fill(key, spec)
		if err != nil {
			t.Fatal(err)
		}
		streams[i] = s
	}
	var wg sync.WaitGroup
	for i, off := range offs {
		s := streams[i]
		wg.Go(func() {
			defer s.Close()
			got, err := io.ReadAll(s.Reader(off))
			if err != nil || !bytes.Equal(got, b[off:]) {
				t.Errorf("read from %d: %d bytes, %v", off, len(got), err)
			}
		})
	}
	wg.Wait()
	if n := u.fetches.Load(); n != 1 {
		t.Errorf("fetches = %d, want 1", n)
	}
}

// TestPassThroughDropsIdleReader checks that a pass-through reader that
// stops reading is cut loose after StallTimeout instead of stalling the rest.
func TestPassThroughDropsIdleReader(t *testing.T) {
	c := newCache(t, Config{PassThroughBytes: 1, StallTimeout: time.Second})
	b := randBytes(2<<20, 33)
	spec := specFor(b, staticUpstream(b))
	spec.NoStore = true
	idle, err := c.Fill(keyOf(b), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	s, err := c.Fill(keyOf(b), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, err := readAll(s); err != nil || !bytes.Equal(got, b) {
		t.Errorf("active reader: %d bytes, %v", len(got), err)
	}
	if _, err := readAll(idle); !errors.Is(err, ErrFellBehind) {
		t.Errorf("idle reader = %v, want ErrFellBehind", err)
	}
}

func TestPassThroughSmall(t *testing.T) {
	for _, size := range []int{0, 1, 100, 70 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			c := newCache(t, Config{})
			b := randBytes(size, 34)
			spec := specFor(b, staticUpstream(b))
			spec.NoStore = true
			var streams []*Stream
			for range 2 {
				s, err := c.Fill(keyOf(b), spec)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				streams = append(streams, s)
			}
			for _, s := range streams {
				if got, err := readAll(s); err != nil || !bytes.Equal(got, b) {
					t.Errorf("read %d of %d bytes: %v", len(got), size, err)
				}
			}
		})
	}
}

// TestContentAddressedEntry: an entry whose key is its bytes' sha256 is
// kept as one file, no Meta sidecar; its Meta is its size and sha256,
// across a restart too; it has no Meta to update; and a fill that says it
// is content-addressed under another key is refused.
func TestContentAddressedEntry(t *testing.T) {
	dir := t.TempDir()
	c := newCache(t, Config{Dir: dir, SyncInterval: time.Hour})
	b := randBytes(20<<10, 77)
	key := keyOf(b)
	u := staticUpstream(b)
	u.meta = Meta{ContentType: "text/x-dropped", ETag: `"dropped"`}
	spec := specFor(b, u)
	spec.ContentAddressed = true
	if got := fillAndRead(t, c, key, spec); !bytes.Equal(got, b) {
		t.Fatal("bytes differ")
	}
	c.wg.Wait()
	if files := objectFiles(t, c); len(files) != 1 || files[0] != key.String() {
		t.Errorf("files of a content-addressed entry = %v, want just %s", files, key)
	}
	check := func(c *Cache, when string) {
		t.Helper()
		o, err := c.Get(key)
		if err != nil {
			t.Fatalf("Get %s: %v", when, err)
		}
		defer o.Close()
		if m := o.Meta(); m.Size != int64(len(b)) || m.SHA256 != digest.SHA256(key) || m.ContentType != "" || m.Stored.IsZero() {
			t.Errorf("Meta %s = %+v", when, m)
		}
		got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("bytes %s: %d, %v", when, len(got), err)
		}
	}
	check(c, "after the fill")
	if err := c.UpdateMeta(key, Meta{ETag: "x"}); !errors.Is(err, ErrContentAddressed) {
		t.Errorf("UpdateMeta = %v, want ErrContentAddressed", err)
	}
	other := specFor(randBytes(10, 1), staticUpstream(randBytes(10, 1)))
	other.ContentAddressed = true
	if _, err := c.Fill(key, other); err == nil {
		t.Error("a content-addressed Fill whose Want is not its key was accepted")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := newCache(t, Config{Dir: dir})
	<-c2.reconcileDone
	check(c2, "after a restart")
}

// TestRemove: a removed entry is gone (its files too) and the next Fill
// fetches it again; a pinned one stays.
func TestRemove(t *testing.T) {
	c := newCache(t, Config{})
	b := randBytes(3000, 78)
	key := keyOf(b)
	u := staticUpstream(b)
	fillAndRead(t, c, key, specFor(b, u))
	c.wg.Wait()
	o, err := c.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Remove(key); ok || err != nil {
		t.Errorf("Remove of a pinned entry = %v, %v; want false, nil", ok, err)
	}
	o.Close()
	if ok, err := c.Remove(key); !ok || err != nil {
		t.Errorf("Remove = %v, %v; want true, nil", ok, err)
	}
	if _, err := c.Get(key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Remove = %v", err)
	}
	if _, err := c.Remove(key); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Remove = %v, want ErrNotFound", err)
	}
	if files := objectFiles(t, c); len(files) != 0 {
		t.Errorf("Remove left %v", files)
	}
	fillAndRead(t, c, key, specFor(b, u))
	if n := u.fetches.Load(); n != 2 {
		t.Errorf("fetches = %d, want 2", n)
	}
}

// TestSmallFillGathered: an object held back whole until verified is
// gathered and written once, however its body arrives: the bytes are
// right, and a body a byte short or long fails as a size error.
func TestSmallFillGathered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		size   int
		extra  int // bytes sent beyond size (negative: fewer)
		chunks int
		ok     bool
	}{
		{"whole in one read", 5000, 0, 1, true},
		{"in many reads", 5000, 0, 50, true},
		{"exactly 64 KiB", 64 << 10, 0, 7, true},
		{"a byte short", 5000, -1, 3, false},
		{"a byte long", 5000, 1, 3, false},
		{"64 KiB and a byte long", 64 << 10, 1, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var writes atomic.Int64
			c := newCache(t, Config{Fault: func(step string) error {
				if step == "write" {
					writes.Add(1)
				}
				return nil
			}})
			b := randBytes(tc.size, uint64(tc.size+tc.extra))
			sent := append(bytes.Clone(b), randBytes(max(tc.extra, 0), 1)...)[:tc.size+tc.extra]
			fd := newFeed()
			u := &upstream{body: func() io.ReadCloser { return fd }}
			s, err := c.Fill(keyOf(b), specFor(b, u))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			go func() {
				step := (len(sent) + tc.chunks - 1) / tc.chunks
				for i := 0; i < len(sent); i += step {
					if !fd.send(sent[i:min(i+step, len(sent))]) {
						return
					}
				}
				close(fd.ch)
			}()
			got, err := readAll(s)
			var se *digest.SizeError
			switch {
			case tc.ok && (err != nil || !bytes.Equal(got, b)):
				t.Errorf("read %d bytes, %v; want all %d", len(got), err, len(b))
			case !tc.ok && !errors.As(err, &se):
				t.Errorf("read %d bytes, %v; want a *digest.SizeError", len(got), err)
			case !tc.ok && len(got) != 0:
				t.Errorf("a failed fill released %d bytes", len(got))
			case tc.ok && writes.Load() != 1:
				t.Errorf("%d writes to the temp file, want 1", writes.Load())
			}
		})
	}
}
