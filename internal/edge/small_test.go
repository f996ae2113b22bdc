package edge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
)

// TestSmallCacheRing puts objects of random sizes through a small arena:
// whatever it still holds reads back exactly, the oldest go first, a
// damaged copy is refused and an object too big is checked but not kept.
func TestSmallCacheRing(t *testing.T) {
	c := newSmallCache(20<<10, 4<<10)
	if c == nil {
		t.Fatal("newSmallCache = nil")
	}
	r := rand.New(rand.NewPCG(1, 2))
	var keys []digest.SHA256
	objs := map[digest.SHA256][]byte{}
	for i := range 400 {
		b := make([]byte, r.IntN(4<<10+1))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		k := digest.Sum(b)
		if !c.put(k, b) {
			t.Fatalf("put %d refused good bytes", i)
		}
		keys = append(keys, k)
		objs[k] = b
		if got, _, _, ok := c.copyTo(nil, k); !ok || !bytes.Equal(got, b) {
			t.Fatalf("object %d just put: ok %v, equal %v", i, ok, bytes.Equal(got, b))
		}
		held := 0
		for _, k := range keys {
			got, etag, clen, ok := c.copyTo(nil, k)
			if !ok {
				continue
			}
			held++
			if !bytes.Equal(got, objs[k]) || etag[0] != etagOf(k) || clen[0] != fmt.Sprint(len(objs[k])) {
				t.Fatalf("after %d puts: an object reads back wrong", i)
			}
		}
		if held == 0 || held > 20<<10 {
			t.Fatalf("after %d puts: %d held", i, held)
		}
	}
	if _, _, _, ok := c.copyTo(nil, keys[0]); ok {
		t.Error("the oldest object is still held after the arena wrapped many times")
	}
	bad := []byte("tampered")
	if c.put(digest.Sum([]byte("original")), bad) {
		t.Error("put accepted bytes that are not their key's")
	}
	big := bytes.Repeat([]byte{1}, 5<<10)
	if !c.put(digest.Sum(big), big) {
		t.Error("put refused a good object too big to keep")
	}
	if _, _, _, ok := c.copyTo(nil, digest.Sum(big)); ok {
		t.Error("an object above the size limit was kept")
	}
}

// oneWriteServer serves h the way pkgserve does: through httpserve's
// OneWriteListener, so that WriteWhole sends a response in one write.
func oneWriteServer(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ConnContext: httpserve.ConnContext}
	go func() { _ = srv.Serve(httpserve.OneWriteListener(ln)) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestSmallObjectFromMemory: a small object is answered from memory once
// loaded (no file, no upstream, even with its disk entry gone), with the
// same headers, Range, HEAD and conditionals as from disk; through a
// one-write server too.
func TestSmallObjectFromMemory(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(3000, 9)
	m1 := m.publish(testSet, map[string]string{"All/s.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	p := "/" + testSet + "/All/s.pkg"
	key := cache.Key(digest.Sum([]byte(body)))
	for _, base := range []string{e.srv.URL, oneWriteServer(t, e)} {
		e.cache.Remove(key)
		e.mem = newSmallCache(1<<20, memObjectMax)
		before := m.objectFetches()
		resp, b := mustGet(t, base, p, http.StatusOK)
		if string(b) != body || resp.Header.Get("Cache-Status") != csMiss {
			t.Fatalf("first GET: %d bytes, Cache-Status %q", len(b), resp.Header.Get("Cache-Status"))
		}
		waitCached(t, e.cache, key)
		if _, err := e.cache.Remove(key); err != nil { // memory alone must answer now
			t.Fatal(err)
		}
		resp, b = mustGet(t, base, p, http.StatusOK)
		h := resp.Header
		if string(b) != body || h.Get("Cache-Status") != csHit || h.Get("ETag") != etagOf(digest.SHA256(key)) ||
			h.Get("Content-Length") != fmt.Sprint(len(body)) || h.Get("Last-Modified") != m1.ID.Time().UTC().Format(http.TimeFormat) ||
			h.Get(hdrSetID) != m1.ID.String() || h.Get("Content-Type") == "" {
			t.Errorf("memory hit: %d bytes, headers %v", len(b), h)
		}
		_, b = mustGet(t, base, p, http.StatusPartialContent, "Range", "bytes=10-19")
		if string(b) != body[10:20] {
			t.Errorf("memory hit Range: %q", b)
		}
		mustGet(t, base, p, http.StatusNotModified, "If-None-Match", etagOf(digest.SHA256(key)))
		req, _ := http.NewRequest(http.MethodHead, base+p, nil)
		hr, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		hr.Body.Close()
		if hr.StatusCode != http.StatusOK || hr.ContentLength != int64(len(body)) {
			t.Errorf("HEAD: %d, length %d", hr.StatusCode, hr.ContentLength)
		}
		if n := m.objectFetches() - before; n != 1 {
			t.Errorf("upstream fetches = %d, want 1", n)
		}
	}
}

// TestSmallDamagedDiskCopyRefetched: a small cached file damaged on disk
// fails its check when loaded into memory: it is never served, it is
// dropped from the disk cache, and fetched again.
func TestSmallDamagedDiskCopyRefetched(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(5000, 10)
	m.publish(testSet, map[string]string{"All/d.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	p := "/" + testSet + "/All/d.pkg"
	key := cache.Key(digest.Sum([]byte(body)))
	mustGet(t, e.srv.URL, p, http.StatusOK)
	waitCached(t, e.cache, key)
	e.mem = newSmallCache(1<<20, memObjectMax) // forget the copy made by the fill
	hex := digest.SHA256(key).String()
	f := filepath.Join(e.dir, "cache", "objects", hex[:2], hex)
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := []byte(body)
	bad[100] ^= 1
	if err := os.WriteFile(f, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	before := m.objectFetches()
	_, b := mustGet(t, e.srv.URL, p, http.StatusOK)
	if string(b) != body {
		t.Fatal("served the damaged copy")
	}
	if n := m.objectFetches() - before; n != 1 {
		t.Errorf("upstream fetches = %d, want 1 (the refetch)", n)
	}
}

// TestSmallFillFailureIsAnErrorStatus: a small object is sent only whole
// and verified, so a tampered upstream gives the client a 502, not a
// broken 200.
func TestSmallFillFailureIsAnErrorStatus(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(20<<10, 11)
	m.publish(testSet, map[string]string{"All/t.pkg": body})
	m.setObjectHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
		bad := append([]byte(nil), data...)
		bad[0] ^= 0xff
		_, _ = w.Write(bad)
	})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	mustGet(t, e.srv.URL, "/"+testSet+"/All/t.pkg", http.StatusBadGateway)
}
