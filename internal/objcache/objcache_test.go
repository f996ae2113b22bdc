package objcache

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// loader returns a load func appending s, counting its calls.
func loader(s string, calls *int) func([]byte) ([]byte, error) {
	return func(dst []byte) ([]byte, error) {
		if calls != nil {
			*calls++
		}
		return append(dst, s...), nil
	}
}

func get(t *testing.T, c *Cache, s string) string {
	t.Helper()
	out, _, err := c.Get(nil, digest.Sum([]byte(s)), int64(len(s)), loader(s, nil))
	if err != nil {
		t.Fatalf("Get(%.10q): %v", s, err)
	}
	return string(out)
}

func held(c *Cache, s string) bool {
	out, _, ok := c.AppendTo(nil, digest.Sum([]byte(s)))
	return ok && string(out) == s
}

func TestGetLoadsOnceThenHits(t *testing.T) {
	c := New(Config{})
	d := digest.Sum([]byte("hello"))
	loads := 0
	for range 3 {
		out, h, err := c.Get([]byte("HTTP/1.1 200 OK\r\n\r\n"), d, 5, loader("hello", &loads))
		if err != nil || string(out) != "HTTP/1.1 200 OK\r\n\r\nhello" {
			t.Fatalf("Get = %q, %v; want the body appended to dst", out, err)
		}
		if h.ETag[0] != `"`+d.String()+`"` || h.ContentLength[0] != "5" {
			t.Errorf("Get: ETag %q, Content-Length %q", h.ETag, h.ContentLength)
		}
	}
	if loads != 1 {
		t.Errorf("%d loads, want 1", loads)
	}
	if st := c.Stats(); st.Hits != 2 || st.Loads != 1 || st.Objects != 1 || st.Bytes != 5 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestGetRefusesWrongBytes(t *testing.T) {
	const real = "the real bytes"
	d := digest.Sum([]byte(real))
	tests := []struct {
		name    string
		data    string
		loadErr error
		want    any // *digest.SizeError, *digest.MismatchError, or the load error
	}{
		{name: "tampered, same size", data: "the fake bytes", want: new(*digest.MismatchError)},
		{name: "short", data: "the real", want: new(*digest.SizeError)},
		{name: "long", data: "the real bytes!", want: new(*digest.SizeError)},
		{name: "load fails", loadErr: errors.New("disk on fire")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(Config{})
			out, _, err := c.Get([]byte("x"), d, int64(len(real)), func(dst []byte) ([]byte, error) {
				return append(dst, tt.data...), tt.loadErr
			})
			switch want := tt.want.(type) {
			case **digest.MismatchError:
				if !errors.As(err, want) {
					t.Errorf("Get = %v, want a *digest.MismatchError", err)
				}
			case **digest.SizeError:
				if !errors.As(err, want) {
					t.Errorf("Get = %v, want a *digest.SizeError", err)
				}
			default:
				if !errors.Is(err, tt.loadErr) {
					t.Errorf("Get = %v, want %v", err, tt.loadErr)
				}
			}
			if string(out) != "x" {
				t.Errorf("Get returned %q with its error, want dst alone", out)
			}
			if _, _, ok := c.AppendTo(nil, d); ok {
				t.Error("wrong bytes were kept")
			}
			if got := get(t, c, real); got != real {
				t.Errorf("Get after a refusal = %q", got)
			}
		})
	}
}

func TestPutRefusesWrongBytes(t *testing.T) {
	c := New(Config{})
	var me *digest.MismatchError
	if _, err := c.Put(digest.Sum([]byte("a")), []byte("b")); !errors.As(err, &me) {
		t.Errorf("Put of other bytes = %v, want a *digest.MismatchError", err)
	}
	if st := c.Stats(); st.Objects != 0 {
		t.Errorf("kept %d objects", st.Objects)
	}
}

func TestEvictsOldestWithinTheArena(t *testing.T) {
	const objSize = 1000
	c := New(Config{MaxBytes: 3 * objSize})
	body := func(i int) string { return fmt.Sprintf("%03d", i) + strings.Repeat("x", objSize-3) }
	for i := range 4 {
		get(t, c, body(i))
	}
	for i, want := range []bool{false, true, true, true} {
		if held(c, body(i)) != want {
			t.Errorf("object %d held = %v, want %v", i, !want, want)
		}
	}
	if st := c.Stats(); st.Bytes != 3*objSize || st.Objects != 3 {
		t.Errorf("Stats = %+v, want 3 objects, %d bytes", st, 3*objSize)
	}
}

// TestRingKeepsBytesIntact: whatever the sizes and the wrapping, every
// object the cache says it holds reads back as exactly its bytes, and the
// bytes held never exceed the arena.
func TestRingKeepsBytesIntact(t *testing.T) {
	const arena = 10_000
	c := New(Config{MaxBytes: arena, MaxObjectBytes: 3000})
	rng := rand.New(rand.NewPCG(1, 2))
	var all []string
	for i := range 500 {
		s := fmt.Sprintf("%d:", i) + strings.Repeat(string(rune('a'+i%26)), rng.IntN(3000))
		if got := get(t, c, s); got != s {
			t.Fatalf("Get returned other bytes for object %d", i)
		}
		all = append(all, s)
		for _, prev := range all {
			if out, _, ok := c.AppendTo(nil, digest.Sum([]byte(prev))); ok && string(out) != prev {
				t.Fatalf("after %d puts an object reads back wrong", i+1)
			}
		}
		if st := c.Stats(); st.Bytes > arena {
			t.Fatalf("after %d puts %d bytes held, over the %d-byte arena", i+1, st.Bytes, arena)
		}
	}
	if !held(c, all[len(all)-1]) {
		t.Error("the last object put is not held")
	}
}

func TestKeepsNothingTooBigOrWhenOff(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		data string
	}{
		{"bigger than MaxObjectBytes", Config{MaxObjectBytes: 10}, strings.Repeat("a", 11)},
		{"bigger than the arena", Config{MaxBytes: 100}, strings.Repeat("b", 101)},
		{"off", Config{MaxBytes: -1}, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.cfg)
			if got := get(t, c, tt.data); got != tt.data {
				t.Fatalf("Get = %q: still served, verified", got)
			}
			if held(c, tt.data) {
				t.Error("kept")
			}
		})
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New(Config{MaxBytes: 64 << 10, MaxObjectBytes: 8 << 10})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for range 2000 {
				i := rng.IntN(40)
				s := fmt.Sprintf("%02d", i) + strings.Repeat("z", i*200)
				out, _, err := c.Get(nil, digest.Sum([]byte(s)), int64(len(s)), loader(s, nil))
				if err != nil || string(out) != s {
					errs <- fmt.Errorf("object %d: %v (%d bytes back)", i, err, len(out))
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkHit4KiB(b *testing.B) {
	c := New(Config{})
	s := strings.Repeat("p", 4096)
	d := digest.Sum([]byte(s))
	buf := make([]byte, 0, 8192)
	if _, _, err := c.Get(buf, d, 4096, loader(s, nil)); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4096)
	for b.Loop() {
		if _, _, ok := c.AppendTo(buf[:0], d); !ok {
			b.Fatal("miss")
		}
	}
}
