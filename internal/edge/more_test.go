package edge

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/manifest"
)

func TestPrefetchCataloguesAfterSwitch(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	files := map[string]string{"meta.conf": "meta", "packagesite.pkg": "site", "data.pkg": "data",
		"All/big.pkg": "not a catalogue", "debian/InRelease": "release"}
	m.publish(testSet, files)
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) { c.Prefetch = 2 })
	e.refresh(t)
	for p, body := range files {
		if p == "All/big.pkg" {
			continue
		}
		waitCached(t, e.cache, cache.Key(digest.Sum([]byte(body))))
	}
	e.bg.Wait()
	if n := m.count("/.pkgcdn/objects/sha256/" + digest.Sum([]byte("not a catalogue")).String()); n != 0 {
		t.Errorf("a package was prefetched (%d fetches)", n)
	}
	before := m.objectFetches()
	resp, _ := mustGet(t, e.srv.URL, "/"+testSet+"/packagesite.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit || m.objectFetches() != before {
		t.Errorf("prefetched catalogue: Cache-Status %q", cs)
	}
}

func TestDiskFullPassesThrough(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(1<<20, 7)
	m.publish(testSet, map[string]string{"All/a.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, func(_ *Config, cc *cache.Config) {
		cc.Fault = func(step string) error {
			if step == "write" {
				return syscall.ENOSPC
			}
			return nil
		}
	})
	e.refresh(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			resp, b, err := get(t, e.srv.URL, "/"+testSet+"/All/a.pkg")
			if err != nil || resp.StatusCode != http.StatusOK || string(b) != body {
				t.Errorf("disk full: GET = %v, %d bytes, err %v; want the whole file", resp.StatusCode, len(b), err)
			}
		})
	}
	wg.Wait()
	if _, err := e.cache.Get(cache.Key(digest.Sum([]byte(body)))); !errors.Is(err, cache.ErrNotFound) {
		t.Errorf("disk full: Get = %v, want nothing kept", err)
	}
	if st := e.cache.Stats(); st.DiskErrors == 0 {
		t.Errorf("DiskErrors = 0, want the ENOSPC counted")
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "1"})
	reg := prometheus.NewRegistry()
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) { c.Registerer = reg })
	e.refresh(t)
	e.met.observeSets()
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	waitCached(t, e.cache, cache.Key(digest.Sum([]byte("1"))))
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// value returns the first sample of name whose labels include want.
	value := func(name string, want ...string) (float64, bool) {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, mt := range mf.GetMetric() {
				for i := 0; i+1 < len(want); i += 2 {
					found := false
					for _, lp := range mt.GetLabel() {
						found = found || lp.GetName() == want[i] && lp.GetValue() == want[i+1]
					}
					if !found {
						continue next
					}
				}
				switch {
				case mt.GetCounter() != nil:
					return mt.GetCounter().GetValue(), true
				case mt.GetGauge() != nil:
					return mt.GetGauge().GetValue(), true
				}
			}
		}
		return 0, false
	}
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pkgcdn_edge_requests_total", []string{"result", "hit"}, 1},
		{"pkgcdn_edge_requests_total", []string{"result", "miss"}, 1},
		{"pkgcdn_edge_bytes_from_cache_total", nil, 1},
		{"pkgcdn_edge_bytes_from_upstream_total", nil, 1},
		{"pkgcdn_edge_upstream_fetches_total", nil, 1},
		{"pkgcdn_edge_cache_misses_total", nil, 1},
		{"pkgcdn_edge_cache_fills_in_flight", nil, 0},
		{"pkgcdn_edge_cache_evictions_total", nil, 0},
		{"pkgcdn_edge_degraded", nil, 0},
		{"pkgcdn_edge_memory_cache_loads_total", nil, 1}, // put by the fill
		{"pkgcdn_edge_memory_cache_hits_total", nil, 1},
		{"pkgcdn_edge_memory_cache_objects", nil, 1},
		{"pkgcdn_edge_memory_cache_bytes", nil, 1},
		{"pkgcdn_edge_set_lag_seconds", []string{"set", testSet}, 0},
		{"pkgcdn_edge_set_id_seconds", []string{"set", testSet}, float64(e.liveID(testSet).Time().Unix())},
	} {
		got, ok := value(tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (found %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
}

func TestDotSegmentsAndEncodedSeparators(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"Packages": "index"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/./Packages", http.StatusOK)
	if string(b) != "index" {
		t.Errorf("./Packages = %q", b)
	}
	mustGet(t, e.srv.URL, "//"+testSet+"/././Packages", http.StatusOK)
	mustGet(t, e.srv.URL, "/"+strings.Replace(testSet, "/", "%2F", 1)+"/Packages", http.StatusNotFound)
	mustGet(t, e.srv.URL, "/"+testSet+"/..%2FPackages", http.StatusNotFound)
}

func TestResignedManifestClearsDegraded(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	files := map[string]string{"a": "1"}
	m1 := m.publish(testSet, files)
	var mu sync.Mutex
	now := time.Now()
	health := new(httpserve.Health)
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) {
		c.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		c.Health = health
	})
	e.update(t.Context())
	if st := health.Status(now); st.Degraded {
		t.Fatalf("healthz = %+v, want ok", st)
	}
	mu.Lock()
	now = m1.Expires.Add(time.Hour)
	mu.Unlock()
	if len(e.Degraded()) != 1 {
		t.Fatalf("Degraded = %v, want the expired set", e.Degraded())
	}
	e.update(t.Context())
	if st := health.Status(now); !st.Degraded || len(st.Reasons) != 1 {
		t.Errorf("healthz = %+v, want degraded by the expired set", st)
	}
	// pkgpublish refresh: the same set ID re-signed with a later expiry.
	m.publish(testSet, files, publishOpts{id: m1.ID, expires: m1.Expires.Add(60 * 24 * time.Hour)})
	e.refresh(t)
	if got := e.liveID(testSet); got != m1.ID {
		t.Errorf("live = %s, want %s", got, m1.ID)
	}
	if d := e.Degraded(); len(d) != 0 {
		t.Errorf("after re-signing Degraded = %v, want none", d)
	}
	e.update(t.Context())
	if st := health.Status(now); st.Degraded {
		t.Errorf("healthz after re-signing = %+v, want ok", st)
	}
	m.setDown(http.StatusServiceUnavailable)
	e.update(t.Context())
	if st := health.Status(now); !st.Degraded {
		t.Errorf("healthz with the upstream down = %+v, want degraded", st)
	}
}

func TestLongPollTimeoutAndWaiterCap(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) {
		c.LongPollTimeout = time.Millisecond
		c.MaxWaiters = -1 // every long-poll refused at once
	})
	e.refresh(t)
	resp, _ := mustGet(t, e.srv.URL, "/.pkgcdn/sets", http.StatusOK)
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	resp, _ = mustGet(t, e.srv.URL, "/.pkgcdn/sets?wait="+etag, http.StatusNotModified)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("refused long-poll without Retry-After")
	}
	e.cfg.MaxWaiters = 10
	resp, _ = mustGet(t, e.srv.URL, "/.pkgcdn/sets?wait="+etag, http.StatusNotModified)
	if resp.Header.Get("Retry-After") != "" {
		t.Error("timed-out long-poll with Retry-After: a chained edge would wait needlessly")
	}
	e.ReleaseWaiters()
	resp, _ = mustGet(t, e.srv.URL, "/.pkgcdn/sets?wait="+etag, http.StatusNotModified)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("long-poll during shutdown without Retry-After")
	}
}

func TestFailoverReturnsToFirstUpstream(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m0, up0 := newFakeMaster(t, s)
	m1, up1 := newFakeMaster(t, s)
	files := map[string]string{"a": "1", "b": "2", "c": "3"}
	m0.publish(testSet, files)
	m1.publish(testSet, files)
	var mu sync.Mutex
	now := time.Now()
	e := newTestEdge(t, v, []string{up0.URL, up1.URL}, func(c *Config, _ *cache.Config) {
		c.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		c.StickyFor = time.Minute
	})
	e.refresh(t)
	m0.setDown(http.StatusBadGateway)
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	m0.setDown(0) // back, but the edge sticks to the one that worked
	before := m0.totalHits()
	mustGet(t, e.srv.URL, "/"+testSet+"/b", http.StatusOK)
	if m0.totalHits() != before {
		t.Error("a request went to the first upstream while sticky to the second")
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	mustGet(t, e.srv.URL, "/"+testSet+"/c", http.StatusOK)
	if n := m0.count("/.pkgcdn/objects/sha256/" + digest.Sum([]byte("3")).String()); n != 1 {
		t.Errorf("after StickyFor the first upstream got %d requests for c, want 1", n)
	}
}

func TestHTTPSUpstreamWithCA(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m := &fakeMaster{t: t, signer: s, manifests: map[string][2][]byte{}, live: map[string]*manifest.Manifest{},
		objects: map[digest.SHA256][]byte{}, hits: map[string]int{}, changed: make(chan struct{})}
	srv := httptest.NewUnstartedServer(m)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	m.publish(testSet, map[string]string{"a": "secure"})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestEdge(t, v, []string{srv.URL}, func(c *Config, _ *cache.Config) { c.UpstreamCAFile = ca })
	e.refresh(t)
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	if string(b) != "secure" {
		t.Errorf("over https: %q", b)
	}
	// Without the CA the upstream's certificate is refused.
	e2 := newTestEdge(t, v, []string{srv.URL}, nil)
	if err := e2.Edge.refresh(t.Context()); err == nil {
		t.Error("an upstream with an unknown CA was trusted")
	}
}

func TestNoVerifiedSetIs503Not404(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "1"})
	m.setDown(http.StatusServiceUnavailable)
	e := newTestEdge(t, v, []string{up.URL}, nil)
	if err := e.Edge.refresh(t.Context()); err == nil {
		t.Fatal("refresh with the upstream down succeeded")
	}
	// Nothing verified yet: a 404 would end pkg's failover to other mirrors.
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusServiceUnavailable)
	mustGet(t, e.srv.URL, "/.pkgcdn/objects/sha256/"+strings.Repeat("0", 64), http.StatusBadGateway)

	// SETS verified, but the set's manifest expired: unavailable, not absent.
	m.setDown(0)
	m.publish("other/set", map[string]string{"b": "2"}, publishOpts{expires: time.Now().Add(-time.Hour).Truncate(time.Second)})
	e.refresh(t)
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	mustGet(t, e.srv.URL, "/other/set/b", http.StatusServiceUnavailable)
	mustGet(t, e.srv.URL, "/"+testSet+"/nope", http.StatusNotFound)
	mustGet(t, e.srv.URL, "/unknown/set/b", http.StatusNotFound)
}

func TestRangeOnUncachedObject(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(300_000, 11)
	m.publish(testSet, map[string]string{"All/curl-8.10.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	resp, b := mustGet(t, e.srv.URL, "//"+testSet+"/All/curl-8.10.pkg", http.StatusPartialContent, "Range", "bytes=123456-")
	if string(b) != body[123456:] {
		t.Errorf("uncached tail range: %d bytes, Content-Range %q", len(b), resp.Header.Get("Content-Range"))
	}
}

// TestCachedThroughProductionServer serves a cached file bigger than
// httpserve.StallChunk through httpserve.Instrument, as pkgserve does: the
// chunked sendfile must keep the bytes in order.
func TestCachedThroughProductionServer(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(3*httpserve.StallChunk+1000, 13)
	m.publish(testSet, map[string]string{"All/big.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	prod := httptest.NewServer(httpserve.Instrument(e, nil, nil, time.Minute))
	t.Cleanup(prod.Close)
	p := "/" + testSet + "/All/big.pkg"
	for i := range 2 { // a miss (streamed), then a hit (sendfile)
		_, b := mustGet(t, prod.URL, p, http.StatusOK)
		if string(b) != body {
			t.Fatalf("GET %d through httpserve: wrong bytes", i)
		}
		waitCached(t, e.cache, cache.Key(digest.Sum([]byte(body))))
	}
	_, b := mustGet(t, prod.URL, p, http.StatusPartialContent, "Range", "bytes=1000-")
	if string(b) != body[1000:] {
		t.Fatal("range through httpserve: wrong bytes")
	}
}

func TestClientHangUpDoesNotAbortFill(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(1<<20, 19)
	m.publish(testSet, map[string]string{"All/a.pkg": body})
	g := newGate()
	m.setObjectHandler(g.serve)
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	p := e.srv.URL + "/" + testSet + "/All/a.pkg"

	ctx, hangUp := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	done := make(chan []byte, 1)
	go func() {
		_, b, err := get(t, e.srv.URL, "/"+testSet+"/All/a.pkg")
		if err != nil {
			t.Error(err)
		}
		done <- b
	}()
	hangUp() // the first client leaves mid-transfer
	resp.Body.Close()
	close(g.release)
	if b := <-done; string(b) != body {
		t.Errorf("the remaining client got %d bytes, want the whole file", len(b))
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("%d upstream fetches, want 1", n)
	}
}

func TestSlowClientDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(16<<20, 23) // well past the socket buffers of a client that does not read
	m.publish(testSet, map[string]string{"All/big.pkg": body})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	slow, err := http.Get(e.srv.URL + "/" + testSet + "/All/big.pkg")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	// The slow client reads nothing while another client gets the whole
	// file and the fill completes.
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/big.pkg", http.StatusOK)
	if string(b) != body {
		t.Fatal("fast client: wrong bytes")
	}
	waitCached(t, e.cache, cache.Key(digest.Sum([]byte(body))))
	rest, err := io.ReadAll(slow.Body)
	if err != nil || string(rest) != body {
		t.Errorf("slow client: %d bytes, err %v", len(rest), err)
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("%d upstream fetches, want 1", n)
	}
}
