package edge

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// plainFile is one file of a plain upstream.
type plainFile struct {
	body    string
	header  map[string]string // extra response headers (Cache-Control, Expires...)
	chunked bool              // no Content-Length
}

// plainUpstream is an ordinary HTTP package server: files with ETag and
// Last-Modified, conditional GETs, request counting.
type plainUpstream struct {
	mu    sync.Mutex // guards everything below
	files map[string]plainFile
	hits  map[string]int
	cond  map[string]int // conditional requests
	down  bool
}

func newPlainUpstream(t testing.TB) (*plainUpstream, *httptest.Server) {
	u := &plainUpstream{files: map[string]plainFile{}, hits: map[string]int{}, cond: map[string]int{}}
	srv := httptest.NewServer(u)
	t.Cleanup(srv.Close)
	return u, srv
}

func (u *plainUpstream) set(path string, f plainFile) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.files[path] = f
}

func (u *plainUpstream) counts(path string) (hits, conditional int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits[path], u.cond[path]
}

func (u *plainUpstream) setDown(down bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.down = down
}

var plainModTime = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func (u *plainUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.hits[r.URL.Path]++
	f, ok := u.files[r.URL.Path]
	down := u.down
	if r.Header.Get("If-None-Match") != "" || r.Header.Get("If-Modified-Since") != "" {
		u.cond[r.URL.Path]++
	}
	u.mu.Unlock()
	if down {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("ETag", `"`+digest.Sum([]byte(f.body)).String()[:16]+`"`)
	h.Set("Last-Modified", plainModTime.Format(http.TimeFormat))
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	for k, v := range f.header {
		h.Set(k, v)
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" && inm == h.Get("ETag") {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if f.chunked {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(f.body))
		return
	}
	h.Set("Content-Length", fmt.Sprint(len(f.body)))
	_, _ = w.Write([]byte(f.body))
}

// newPlainEdge is an edge in plain mode in front of up.
func newPlainEdge(t testing.TB, up string, mod func(*Config)) *testEdge {
	return newTestEdge(t, nil, []string{up}, func(c *Config, _ *cache.Config) {
		if mod != nil {
			mod(c)
		}
	})
}

func TestPlainSetIDChangeRevalidates(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	// What package servers send: caches must not keep catalogues. The
	// set-ID rule makes keeping them safe.
	noCache := map[string]string{"Cache-Control": "max-age=0, private"}
	u.set("/SETID", plainFile{body: "1"})
	u.set("/repo/packagesite.pkg", plainFile{body: "catalogue 1", header: noCache})
	u.set("/repo/All/a.pkg", plainFile{body: "package a", header: noCache})
	e := newPlainEdge(t, srv.URL, func(c *Config) { c.SetIDURL = "/SETID" })
	poll := func() {
		t.Helper()
		if err := e.pollSetID(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	poll()
	for _, p := range []string{"/repo/packagesite.pkg", "/repo/All/a.pkg"} {
		resp, _ := mustGet(t, e.srv.URL, p, http.StatusOK)
		if cs := resp.Header.Get("Cache-Status"); cs != csMiss {
			t.Errorf("GET %s: Cache-Status %q, want miss", p, cs)
		}
		waitCached(t, e.cache, plainKey(p, 0))
		resp, _ = mustGet(t, e.srv.URL, p, http.StatusOK)
		if cs := resp.Header.Get("Cache-Status"); cs != csHit {
			t.Errorf("second GET %s: Cache-Status %q, want hit (max-age=0, private ignored)", p, cs)
		}
	}
	// Polling an unchanged set-ID keeps everything fresh.
	poll()
	resp, _ := mustGet(t, e.srv.URL, "/repo/All/a.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit {
		t.Errorf("after unchanged poll: %q, want hit", cs)
	}
	// A new set: the catalogue changed, the package did not.
	u.set("/repo/packagesite.pkg", plainFile{body: "catalogue 2", header: noCache})
	u.set("/SETID", plainFile{body: "2"})
	poll()
	resp, b := mustGet(t, e.srv.URL, "/repo/All/a.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csRevalidated || string(b) != "package a" {
		t.Errorf("unchanged file after set change: %q %q, want revalidated", cs, b)
	}
	if _, c := u.counts("/repo/All/a.pkg"); c != 1 {
		t.Errorf("conditional requests = %d, want 1", c)
	}
	resp, _ = mustGet(t, e.srv.URL, "/repo/All/a.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit {
		t.Errorf("after 304: %q, want hit", cs)
	}
	resp, b = mustGet(t, e.srv.URL, "/repo/packagesite.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csReplaced || string(b) != "catalogue 2" {
		t.Errorf("changed file after set change: %q %q, want the new bytes", cs, b)
	}
	waitCached(t, e.cache, plainKey("/repo/packagesite.pkg", 1))
	hits, _ := u.counts("/repo/packagesite.pkg")
	resp, b = mustGet(t, e.srv.URL, "/repo/packagesite.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit || string(b) != "catalogue 2" {
		t.Errorf("replaced file: %q %q, want a hit of the new bytes", cs, b)
	}
	if h, _ := u.counts("/repo/packagesite.pkg"); h != hits {
		t.Errorf("replaced file hit made %d upstream requests", h-hits)
	}
	// The next set change: the replaced entry is revalidated in its turn.
	u.set("/SETID", plainFile{body: "3"})
	poll()
	resp, b = mustGet(t, e.srv.URL, "/repo/packagesite.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csRevalidated || string(b) != "catalogue 2" {
		t.Errorf("replaced file after the next set change: %q %q, want revalidated", cs, b)
	}
}

func TestPlainGenerationSurvivesRestart(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/SETID", plainFile{body: "1"})
	u.set("/f", plainFile{body: "file"})
	dir := t.TempDir()
	mod := func(c *Config, _ *cache.Config) { c.SetIDURL = "/SETID" }
	e := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	if err := e.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.srv.URL, "/f", http.StatusOK)
	waitCached(t, e.cache, plainKey("/f", 0))
	e.srv.Close()
	e.cache.Close()
	e2 := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	if err := e2.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	resp, _ := mustGet(t, e2.srv.URL, "/f", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit {
		t.Errorf("after restart with the same set-ID: %q, want hit", cs)
	}
}

func TestPlainRFC9111Freshness(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header map[string]string
		// second is the Cache-Status of a second GET right after the first;
		// later is the one after the clock moved 2 minutes on.
		second, later string
		stored        bool
	}{
		{name: "max-age", header: map[string]string{"Cache-Control": "max-age=60"}, second: csHit, later: csRevalidated, stored: true},
		{name: "s-maxage wins", header: map[string]string{"Cache-Control": "max-age=0, s-maxage=600"}, second: csHit, later: csHit, stored: true},
		{name: "no-cache", header: map[string]string{"Cache-Control": "no-cache"}, second: csRevalidated, later: csRevalidated, stored: true},
		{name: "no-store", header: map[string]string{"Cache-Control": "no-store"}, second: csMiss, later: csMiss},
		{name: "private", header: map[string]string{"Cache-Control": "private, max-age=600"}, second: csMiss, later: csMiss},
		{name: "expires", header: map[string]string{"Expires": time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)}, second: csHit, later: csRevalidated, stored: true},
		{name: "age", header: map[string]string{"Cache-Control": "max-age=100", "Age": "100"}, second: csRevalidated, later: csRevalidated, stored: true},
		{name: "heuristic", header: nil, second: csHit, later: csHit, stored: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, srv := newPlainUpstream(t)
			u.set("/f", plainFile{body: "body", header: tt.header})
			var mu sync.Mutex
			now := time.Now()
			e := newPlainEdge(t, srv.URL, func(c *Config) {
				c.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			})
			mustGet(t, e.srv.URL, "/f", http.StatusOK)
			if tt.stored {
				waitCached(t, e.cache, plainKey("/f", 0))
			}
			resp, b := mustGet(t, e.srv.URL, "/f", http.StatusOK)
			if cc := resp.Header.Get("Cache-Control"); (cc == "no-store") != !tt.stored {
				t.Errorf("Cache-Control to clients = %q (stored %v)", cc, tt.stored)
			}
			if cs := resp.Header.Get("Cache-Status"); cs != tt.second || string(b) != "body" {
				t.Errorf("second GET: Cache-Status %q, want %q (body %q)", cs, tt.second, b)
			}
			mu.Lock()
			now = now.Add(2 * time.Minute)
			mu.Unlock()
			resp, _ = mustGet(t, e.srv.URL, "/f", http.StatusOK)
			if cs := resp.Header.Get("Cache-Status"); cs != tt.later {
				t.Errorf("later GET: Cache-Status %q, want %q", cs, tt.later)
			}
		})
	}
}

func TestPlainUpstreamDown(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/cached", plainFile{body: "old but good", header: map[string]string{"Cache-Control": "max-age=0"}})
	u.set("/uncached", plainFile{body: "never fetched"})
	e := newPlainEdge(t, srv.URL, nil)
	mustGet(t, e.srv.URL, "/cached", http.StatusOK)
	waitCached(t, e.cache, plainKey("/cached", 0))
	u.setDown(true)
	resp, b := mustGet(t, e.srv.URL, "/cached", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csStale || string(b) != "old but good" {
		t.Errorf("stale-if-error: %q %q", cs, b)
	}
	mustGet(t, e.srv.URL, "/uncached", http.StatusBadGateway)
	srv.Close() // connection refused now
	mustGet(t, e.srv.URL, "/cached", http.StatusOK)
	mustGet(t, e.srv.URL, "/uncached", http.StatusBadGateway)
}

func TestPlainStatusesAndPaths(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/chunked", plainFile{body: strings.Repeat("c", 100<<10), chunked: true})
	u.set("/dir/~user$x", plainFile{body: "odd name"})
	e := newPlainEdge(t, srv.URL, nil)
	mustGet(t, e.srv.URL, "/missing", http.StatusNotFound)
	_, b := mustGet(t, e.srv.URL, "/chunked", http.StatusOK)
	if len(b) != 100<<10 {
		t.Errorf("chunked: %d bytes", len(b))
	}
	_, b = mustGet(t, e.srv.URL, "//dir/~user$x", http.StatusOK)
	if string(b) != "odd name" {
		t.Errorf("odd name: %q", b)
	}
	before, _ := u.counts("/etc/passwd")
	for _, p := range []string{"/../etc/passwd", "/dir/../../etc/passwd", "/dir/%2e%2e/%2e%2e/etc/passwd", "/a\\..\\b", "/x%00"} {
		resp, _, err := get(t, e.srv.URL, p)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %q = %d, want 404", p, resp.StatusCode)
		}
	}
	if after, _ := u.counts("/etc/passwd"); after != before {
		t.Error("a hostile path reached the upstream")
	}
	req, _ := http.NewRequest(http.MethodPut, e.srv.URL+"/chunked", strings.NewReader("x"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT = %d, want 405", resp.StatusCode)
	}
}

func TestPlainReplaceAfterRestartNeverServesSuperseded(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/SETID", plainFile{body: "1"})
	u.set("/cat", plainFile{body: "one"})
	dir := t.TempDir()
	mod := func(c *Config, _ *cache.Config) { c.SetIDURL = "/SETID" }
	e := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	step := func(e *testEdge, setID, body, want string) {
		t.Helper()
		u.set("/cat", plainFile{body: body})
		u.set("/SETID", plainFile{body: setID})
		if err := e.pollSetID(t.Context()); err != nil {
			t.Fatal(err)
		}
		_, b := mustGet(t, e.srv.URL, "/cat", http.StatusOK)
		if string(b) != want {
			t.Fatalf("set %s: /cat = %q, want %q", setID, b, want)
		}
	}
	step(e, "1", "one", "one")
	waitCached(t, e.cache, plainKey("/cat", 0))
	step(e, "2", "two", "two") // version 1
	waitCached(t, e.cache, plainKey("/cat", 1))
	e.srv.Close()
	e.cache.Close()
	e2 := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	// Versions restart at 0 ("one", stale); the new bytes must not land on
	// version 1 (holding "two").
	step(e2, "3", "three", "three")
	_, b := mustGet(t, e2.srv.URL, "/cat", http.StatusOK)
	if string(b) != "three" {
		t.Errorf("/cat = %q, want three", b)
	}
}

func TestPlainNegativeCache(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/SETID", plainFile{body: "1"})
	e := newPlainEdge(t, srv.URL, func(c *Config) { c.SetIDURL = "/SETID" })
	if err := e.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		mustGet(t, e.srv.URL, "/repo/packagesite.tzst", http.StatusNotFound)
	}
	if h, _ := u.counts("/repo/packagesite.tzst"); h != 1 {
		t.Errorf("absent fallback asked upstream %d times, want 1", h)
	}
	// A new set may have it.
	u.set("/repo/packagesite.tzst", plainFile{body: "now here"})
	u.set("/SETID", plainFile{body: "2"})
	if err := e.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	_, b := mustGet(t, e.srv.URL, "/repo/packagesite.tzst", http.StatusOK)
	if string(b) != "now here" {
		t.Errorf("after the set change: %q", b)
	}
}

func TestPlainVersionsSurviveRestart(t *testing.T) {
	t.Parallel()
	u, srv := newPlainUpstream(t)
	u.set("/SETID", plainFile{body: "1"})
	u.set("/cat", plainFile{body: "one"})
	dir := t.TempDir()
	mod := func(c *Config, _ *cache.Config) { c.SetIDURL = "/SETID" }
	e := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	if err := e.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.srv.URL, "/cat", http.StatusOK)
	waitCached(t, e.cache, plainKey("/cat", 0))
	u.set("/cat", plainFile{body: "two"})
	u.set("/SETID", plainFile{body: "2"})
	if err := e.pollSetID(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustGet(t, e.srv.URL, "/cat", http.StatusOK) // replaced: version 1
	waitCached(t, e.cache, plainKey("/cat", 1))
	e.saveVersions() // what Run does every few seconds and when it stops
	e.srv.Close()
	e.cache.Close()
	e2 := openTestEdge(t, dir, nil, []string{srv.URL}, mod)
	before, _ := u.counts("/cat")
	resp, b := mustGet(t, e2.srv.URL, "/cat", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csHit || string(b) != "two" {
		t.Errorf("after restart: %q %q, want a hit of two", cs, b)
	}
	if after, _ := u.counts("/cat"); after != before {
		t.Errorf("after restart: %d upstream requests, want 0", after-before)
	}
}
