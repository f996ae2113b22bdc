package edge

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/objcache"
)

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
		e.mem = objcache.New(objcache.Config{MaxBytes: 1 << 20, MaxObjectBytes: memObjectMax})
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
	e.mem = objcache.New(objcache.Config{MaxBytes: 1 << 20, MaxObjectBytes: memObjectMax}) // forget the copy made by the fill
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

// TestSmallDamagedDiskCopyHeldOpen: a damaged small copy that cannot be
// dropped because another reader has it open is still never served: the
// request that finds it damaged gets an error status, not its bytes.
func TestSmallDamagedDiskCopyHeldOpen(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(5000, 11)
	m.publish(testSet, map[string]string{"All/h.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	p := "/" + testSet + "/All/h.pkg"
	key := cache.Key(digest.Sum([]byte(body)))
	mustGet(t, e.srv.URL, p, http.StatusOK)
	waitCached(t, e.cache, key)
	e.mem = objcache.New(objcache.Config{MaxBytes: 1 << 20, MaxObjectBytes: memObjectMax})
	hex := digest.SHA256(key).String()
	f := filepath.Join(e.dir, "cache", "objects", hex[:2], hex)
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	bad := []byte(body)
	bad[200] ^= 1
	if err := os.WriteFile(f, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	held, err := e.cache.Get(key) // another reader: Remove must refuse
	if err != nil {
		t.Fatal(err)
	}
	resp, b := mustGet(t, e.srv.URL, p, http.StatusBadGateway)
	if string(b) == string(bad) || resp.StatusCode == http.StatusOK {
		t.Fatalf("served the damaged copy: %s", resp.Status)
	}
	held.Close()
	if _, b := mustGet(t, e.srv.URL, p, http.StatusOK); string(b) != body {
		t.Fatal("once the reader is gone, the object is not fetched again whole")
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
