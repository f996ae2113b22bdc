package objcache

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

func obj(s string) (digest.SHA256, int64, func() ([]byte, error)) {
	return digest.Sum([]byte(s)), int64(len(s)), func() ([]byte, error) { return []byte(s), nil }
}

func TestGetLoadsOnceThenHits(t *testing.T) {
	c := New(Config{})
	d, size, _ := obj("hello")
	loads := 0
	load := func() ([]byte, error) { loads++; return []byte("hello"), nil }
	for range 3 {
		o, err := c.Get(d, size, load)
		if err != nil || string(o.Data) != "hello" {
			t.Fatalf("Get = %v, %v, want hello", o, err)
		}
		if o.ETag[0] != `"`+d.String()+`"` || o.ContentLength[0] != "5" || o.SHA256 != d {
			t.Errorf("Get: ETag %q, Content-Length %q, SHA256 %s", o.ETag, o.ContentLength, o.SHA256)
		}
	}
	if loads != 1 {
		t.Errorf("%d loads, want 1", loads)
	}
	if st := c.Stats(); st.Hits != 2 || st.Misses != 1 || st.Objects != 1 || st.Bytes != 5+entryOverhead {
		t.Errorf("Stats = %+v", st)
	}
}

func TestGetRefusesWrongBytes(t *testing.T) {
	d, size, _ := obj("the real bytes")
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
			_, err := c.Get(d, size, func() ([]byte, error) { return []byte(tt.data), tt.loadErr })
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
			if _, ok := c.Lookup(d); ok {
				t.Error("wrong bytes were kept")
			}
			// The right bytes are still loaded afterwards.
			if o, err := c.Get(obj("the real bytes")); err != nil || string(o.Data) != "the real bytes" {
				t.Errorf("Get after a refusal = %v, %v", o, err)
			}
		})
	}
}

func TestEvictsLeastRecentlyUsedWithinMaxBytes(t *testing.T) {
	const objSize = 1000
	c := New(Config{MaxBytes: 3 * (objSize + entryOverhead)})
	body := func(i int) string { return fmt.Sprintf("%03d", i) + strings.Repeat("x", objSize-3) }
	for i := range 3 {
		if _, err := c.Get(obj(body(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Lookup(digest.Sum([]byte(body(0)))) // 1 is now the least recently used
	if _, err := c.Get(obj(body(3))); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, true} {
		if _, ok := c.Lookup(digest.Sum([]byte(body(i)))); ok != want {
			t.Errorf("object %d held = %v, want %v", i, ok, want)
		}
	}
	if st := c.Stats(); st.Bytes > 3*(objSize+entryOverhead) || st.Objects != 3 {
		t.Errorf("Stats = %+v, want 3 objects within MaxBytes", st)
	}
}

func TestKeepsNothingTooBigOrWhenOff(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		data string
	}{
		{"bigger than MaxObjectBytes", Config{MaxObjectBytes: 10}, strings.Repeat("a", 11)},
		{"bigger than the cache", Config{MaxBytes: 100}, strings.Repeat("b", 100)},
		{"off", Config{MaxBytes: -1}, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.cfg)
			o, err := c.Get(obj(tt.data))
			if err != nil || string(o.Data) != tt.data {
				t.Fatalf("Get = %v, %v: still served, verified", o, err)
			}
			if _, ok := c.Lookup(o.SHA256); ok {
				t.Error("kept")
			}
			if st := c.Stats(); st.Objects != 0 || st.Bytes != 0 {
				t.Errorf("Stats = %+v, want empty", st)
			}
			if _, err := c.Get(o.SHA256, int64(len(tt.data)), func() ([]byte, error) { return []byte(strings.Repeat("z", len(tt.data))), nil }); err == nil {
				t.Error("not kept, but wrong bytes are still refused: got nil error")
			}
		})
	}
}

func TestConcurrentGets(t *testing.T) {
	c := New(Config{MaxBytes: 20 * (100 + entryOverhead)})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				s := fmt.Sprintf("%100d", (i*7+g)%50)
				o, err := c.Get(obj(s))
				if err != nil || string(o.Data) != s {
					t.Errorf("Get(%q) = %v, %v", s, o, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if st := c.Stats(); st.Bytes > 20*(100+entryOverhead) || st.Hits+st.Misses != 8*500 {
		t.Errorf("Stats = %+v", st)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := New(Config{})
	d, size, load := obj(strings.Repeat("x", 4096))
	if _, err := c.Get(d, size, load); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(d, size, load); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGetMiss is the cost of a verified load of a 4 KiB object
// (hashing included) with eviction, cache full.
func BenchmarkGetMiss(b *testing.B) {
	c := New(Config{MaxBytes: 16 * (4096 + entryOverhead)})
	bodies := make([][]byte, 64)
	ds := make([]digest.SHA256, 64)
	for i := range bodies {
		bodies[i] = []byte(fmt.Sprintf("%4096d", i))
		ds[i] = digest.Sum(bodies[i])
	}
	b.SetBytes(4096)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i = (i + 1) % len(bodies)
		if _, err := c.Get(ds[i], 4096, func() ([]byte, error) { return bodies[i], nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHotObjectSurvivesAStreamOfMisses: an object used between every two
// loads of one-off objects is never the one evicted.
func TestHotObjectSurvivesAStreamOfMisses(t *testing.T) {
	c := New(Config{MaxBytes: 4 * (10 + entryOverhead)})
	hot := "hot object"
	if _, err := c.Get(obj(hot)); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := c.Get(obj(fmt.Sprintf("cold %05d", i))); err != nil {
			t.Fatal(err)
		}
		if _, ok := c.Lookup(digest.Sum([]byte(hot))); !ok {
			t.Fatalf("hot object evicted after %d cold loads", i+1)
		}
	}
	if st := c.Stats(); st.Objects != 4 || st.Bytes != 4*(10+entryOverhead) {
		t.Errorf("Stats = %+v, want 4 objects", st)
	}
}

// BenchmarkGetHitParallel is hits on every P at once (no lock on a hit).
func BenchmarkGetHitParallel(b *testing.B) {
	c := New(Config{})
	var ds []digest.SHA256
	for i := range 64 {
		d, size, load := obj(fmt.Sprintf("%4096d", i))
		if _, err := c.Get(d, size, load); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := c.Lookup(ds[i%64]); !ok {
				b.Error("miss")
				return
			}
			i++
		}
	})
}
