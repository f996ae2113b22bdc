package edge

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

const testSet = "FreeBSD:14:amd64/latest"

func TestFillOneFetchStreamsToManyClients(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(1<<20, 1)
	m.publish(testSet, map[string]string{"All/big.pkg": body})
	g := newGate()
	m.setObjectHandler(g.serve)
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)

	const clients = 50
	var wg sync.WaitGroup
	gotFirst := make(chan struct{}, clients)
	errs := make(chan error, clients)
	statuses := make(chan string, clients)
	for range clients {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/"+testSet+"/All/big.pkg", nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) {
				errs <- fmt.Errorf("status %d, length %d", resp.StatusCode, resp.ContentLength)
				return
			}
			statuses <- resp.Header.Get("Cache-Status")
			first := make([]byte, 4096)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				errs <- fmt.Errorf("first bytes: %w", err)
				return
			}
			gotFirst <- struct{}{}
			rest, err := io.ReadAll(resp.Body)
			if err != nil {
				errs <- fmt.Errorf("rest: %w", err)
				return
			}
			if string(first)+string(rest) != body {
				errs <- errors.New("wrong bytes")
			}
		})
	}
	// Every client gets its first bytes while the upstream still holds back
	// the second half.
	ctx := waitCtx(t)
	for i := range clients {
		select {
		case <-gotFirst:
		case err := <-errs:
			t.Fatalf("client failed before release: %v", err)
		case <-ctx.Done():
			t.Fatalf("only %d of %d clients got bytes before the upstream finished", i, clients)
		}
	}
	close(g.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("upstream object fetches = %d, want 1", n)
	}
	// One client started the fill; every other one joined it (RFC 9211).
	close(statuses)
	count := map[string]int{}
	for cs := range statuses {
		count[cs]++
	}
	if count[csMiss] != 1 || count[csCollapsed] != clients-1 {
		t.Errorf("Cache-Status counts %v, want 1 %q and %d %q", count, csMiss, clients-1, csCollapsed)
	}
	// Now cached: a hit with no upstream request.
	waitCached(t, e.cache, cache.Key(digest.Sum([]byte(body))))
	resp, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/big.pkg", http.StatusOK)
	if string(b) != body || resp.Header.Get("Cache-Status") != csHit {
		t.Errorf("second GET: Cache-Status %q, body ok %v", resp.Header.Get("Cache-Status"), string(b) == body)
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("upstream object fetches after hit = %d, want 1", n)
	}
}

// dieMidFile sends half of the object and then breaks the connection.
func dieMidFile(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	_, _ = w.Write(data[:len(data)/2])
	http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

func TestFillUpstreamDiesMidFile(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(512<<10, 2)
	m.publish(testSet, map[string]string{"All/a.pkg": body})
	m.setObjectHandler(dieMidFile)
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)

	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			_, b, err := get(t, e.srv.URL, "/"+testSet+"/All/a.pkg")
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("client got %d bytes, err %v; want a broken connection (unexpected EOF)", len(b), err)
			}
		})
	}
	wg.Wait()
	if _, err := e.cache.Get(cache.Key(digest.Sum([]byte(body)))); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("after a failed fill Get = %v, want ErrNotFound", err)
	}
	before := m.objectFetches()
	m.setObjectHandler(nil)
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/a.pkg", http.StatusOK)
	if string(b) != body {
		t.Fatal("refetch served wrong bytes")
	}
	if n := m.objectFetches(); n != before+1 {
		t.Errorf("refetch: %d upstream fetches, want %d", n, before+1)
	}
}

func TestFillTamperedBytesNeverComplete(t *testing.T) {
	t.Parallel()
	for _, size := range []int{1000, 300 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			t.Parallel()
			s, v := testKeys(t)
			m, up := newFakeMaster(t, s)
			body := pattern(size, 3)
			m.publish(testSet, map[string]string{"All/a.pkg": body})
			m.setObjectHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
				bad := []byte(data)
				bad = append([]byte(nil), bad...)
				bad[len(bad)-1] ^= 0xff // right length, wrong last byte
				w.Header().Set("Content-Length", fmt.Sprint(len(bad)))
				_, _ = w.Write(bad)
			})
			e := newTestEdge(t, v, []string{up.URL}, nil)
			e.refresh(t)
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					resp, b, err := get(t, e.srv.URL, "/"+testSet+"/All/a.pkg")
					if err == nil && resp.StatusCode == http.StatusOK {
						t.Errorf("client got a complete 200 of %d bytes from a tampered upstream", len(b))
					}
					if len(b) == len(body) {
						t.Errorf("client received all %d bytes", len(b))
					}
				})
			}
			wg.Wait()
			if st := e.cache.Stats(); st.VerifyFailures == 0 {
				t.Errorf("VerifyFailures = 0, want > 0")
			}
			if _, err := e.cache.Get(cache.Key(digest.Sum([]byte(body)))); !errors.Is(err, cache.ErrNotFound) {
				t.Errorf("tampered object cached: Get = %v", err)
			}
		})
	}
}

func TestUnknownPathIs404WithoutUpstream(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"All/a.pkg": "a"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	before := m.totalHits()
	for _, p := range []string{
		"/" + testSet + "/All/missing.pkg",
		"/" + testSet + "/packagesite.tzst",
		"/FreeBSD:13:amd64/latest/All/a.pkg",
		"/nosuchset/x",
		"/" + testSet + "/../../../etc/passwd",
		"/" + testSet + "/All/%2e%2e/%2e%2e/etc/passwd",
		"/" + testSet + "/All/..%2f..%2fetc/passwd",
		"/" + testSet + "/All\\..\\x",
		"/" + testSet + "/All/a.pkg%00",
		"/.pkgcdn/objects/sha256/../../etc/passwd",
		"/.pkgcdn/objects/sha256/ABC",
		"/.pkgcdn/manifest/" + testSet + "/notanid",
		"/.pkgcdn/publish/commit",
		"/" + strings.Repeat("a/", 3000),
	} {
		resp, _, err := get(t, e.srv.URL, p)
		if err != nil {
			t.Fatalf("GET %q: %v", p, err)
		}
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %q = %d, want 404", p, resp.StatusCode)
		}
	}
	if after := m.totalHits(); after != before {
		t.Errorf("unknown paths made %d upstream requests, want 0", after-before)
	}
}

func TestSetSwitchAtomicUnderLoad(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	files := func(gen int) map[string]string {
		out := map[string]string{}
		for i := range 5 {
			out[fmt.Sprintf("All/p%d.pkg", i)] = fmt.Sprintf("gen %d file %d", gen, i)
		}
		return out
	}
	ids := map[string]int{} // set ID → generation
	ids[m.publish(testSet, files(0)).ID.String()] = 0
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex // guards ids for readers
	for c := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := fmt.Sprintf("/%s/All/p%d.pkg", testSet, (c+i)%5)
				resp, b, err := get(t, e.srv.URL, p)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s: %v %v", p, resp, err)
					return
				}
				mu.Lock()
				gen, ok := ids[resp.Header.Get("X-Pkgcdn-Set-Id")]
				mu.Unlock()
				if want := fmt.Sprintf("gen %d file %d", gen, (c+i)%5); !ok || string(b) != want {
					t.Errorf("GET %s under set %s = %q, want %q", p, resp.Header.Get("X-Pkgcdn-Set-Id"), b, want)
					return
				}
			}
		})
	}
	for gen := 1; gen <= 5; gen++ {
		mu.Lock()
		ids[m.publish(testSet, files(gen)).ID.String()] = gen
		mu.Unlock()
		e.refresh(t)
	}
	close(stop)
	wg.Wait()
}

func TestUnchangedFileAfterSwitchIsAHit(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"All/same.pkg": "same bytes", "meta.conf": "v1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	resp, _ := mustGet(t, e.srv.URL, "/"+testSet+"/All/same.pkg", http.StatusOK)
	if cs := resp.Header.Get("Cache-Status"); cs != csMiss {
		t.Errorf("first GET Cache-Status = %q, want %q", cs, csMiss)
	}
	waitCached(t, e.cache, cache.Key(digest.Sum([]byte("same bytes"))))
	m2 := m.publish(testSet, map[string]string{"All/same.pkg": "same bytes", "meta.conf": "v2"})
	e.refresh(t)
	if got := e.liveID(testSet); got != m2.ID {
		t.Fatalf("live ID = %s, want %s", got, m2.ID)
	}
	before := m.totalHits()
	resp, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/same.pkg", http.StatusOK)
	if string(b) != "same bytes" || resp.Header.Get("Cache-Status") != csHit {
		t.Errorf("after switch: %q, Cache-Status %q", b, resp.Header.Get("Cache-Status"))
	}
	if got := m.totalHits() - before; got != 0 {
		t.Errorf("unchanged file after switch: %d upstream requests, want 0", got)
	}
	if lm, want := resp.Header.Get("Last-Modified"), m1.ID.Time().Format(http.TimeFormat); lm != want {
		t.Errorf("Last-Modified = %q, want the first set's %q", lm, want)
	}
	if got := resp.Header.Get("X-Pkgcdn-Set-Id"); got != m2.ID.String() {
		t.Errorf("X-Pkgcdn-Set-Id = %q, want %s", got, m2.ID)
	}
	_, b = mustGet(t, e.srv.URL, "/"+testSet+"/meta.conf", http.StatusOK)
	if string(b) != "v2" {
		t.Errorf("changed file = %q, want v2", b)
	}
}

func TestGraceServesDroppedPath(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"All/old-1.0.pkg": "old", "meta.conf": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	for i, want := range []int{http.StatusOK, http.StatusOK, http.StatusNotFound} {
		m.publish(testSet, map[string]string{"All/new-1.1.pkg": "new", "meta.conf": fmt.Sprint(i + 2)})
		e.refresh(t)
		resp, b, err := get(t, e.srv.URL, "/"+testSet+"/All/old-1.0.pkg")
		if err != nil || resp.StatusCode != want {
			t.Fatalf("after %d switches: GET dropped path = %v %v, want %d", i+1, resp.StatusCode, err, want)
		}
		if want == http.StatusOK && string(b) != "old" {
			t.Errorf("grace served %q, want old", b)
		}
		if want == http.StatusOK && (resp.Header.Get("X-Pkgcdn-Grace") != e.liveID(testSet).String() ||
			resp.Header.Get("X-Pkgcdn-Set-Id") == e.liveID(testSet).String()) {
			t.Errorf("grace headers: Set-Id %q, Grace %q, live %s", resp.Header.Get("X-Pkgcdn-Set-Id"),
				resp.Header.Get("X-Pkgcdn-Grace"), e.liveID(testSet))
		}
	}
}

func TestNoticeIsOnlyAHint(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	future := setid.FromTime(baseTime.Add(time.Hour)).String()
	for _, tt := range []struct {
		name, body string
		want       int
	}{
		{name: "unknown set", body: `{"set":"evil/set","id":"` + future + `"}`, want: http.StatusAccepted},
		{name: "id not in SETS", body: `{"set":"` + testSet + `","id":"` + future + `"}`, want: http.StatusAccepted},
		{name: "replay", body: `{"set":"` + testSet + `","id":"` + m1.ID.String() + `"}`, want: http.StatusAccepted},
		{name: "bad json", body: `{"set":`, want: http.StatusBadRequest},
		{name: "bad id", body: `{"set":"a","id":"yesterday"}`, want: http.StatusBadRequest},
		{name: "too big", body: `{"set":"` + strings.Repeat("a", 5000) + `"}`, want: http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(e.srv.URL+"/.pkgcdn/notify", "application/json", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("POST notify %s = %d, want %d", tt.body, resp.StatusCode, tt.want)
			}
			e.refresh(t) // what the kick does
			if got := e.liveID(testSet); got != m1.ID {
				t.Errorf("after notice live ID = %s, want %s", got, m1.ID)
			}
			if _, ok := e.snap.Load().sets["evil/set"]; ok {
				t.Error("a notice created a set")
			}
		})
	}
}

func TestRollbackSetsRefused(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"a": "1"})
	oldSets := m.sets
	m2 := m.publish(testSet, map[string]string{"a": "2"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	if got := e.liveID(testSet); got != m2.ID {
		t.Fatalf("live = %s, want %s", got, m2.ID)
	}
	m.setSets(oldSets) // a validly signed but older SETS (a replay)
	e.refresh(t)
	if got := e.liveID(testSet); got != m2.ID {
		t.Errorf("after replayed SETS live = %s, want %s (rollback to %s refused)", got, m2.ID, m1.ID)
	}
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	if string(b) != "2" {
		t.Errorf("served %q after rollback attempt, want 2", b)
	}
}

func TestBadSignaturesRefused(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	other, _ := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	// The next set signed by an untrusted key.
	m.signer = other
	m.publish(testSet, map[string]string{"a": "evil"})
	if err := e.Edge.refresh(t.Context()); err == nil {
		t.Error("refresh accepted SETS signed by an untrusted key")
	}
	if got := e.liveID(testSet); got != m1.ID {
		t.Errorf("live = %s, want %s", got, m1.ID)
	}
}

func TestExpiredManifestNotSwitchedTo(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	m.publish(testSet, map[string]string{"a": "2"}, publishOpts{expires: time.Now().Add(-time.Hour).Truncate(time.Second)})
	e.refresh(t)
	if got := e.liveID(testSet); got != m1.ID {
		t.Errorf("live = %s, want %s (expired manifest refused)", got, m1.ID)
	}
	if len(e.Degraded()) != 0 {
		t.Errorf("Degraded = %v, want none", e.Degraded())
	}
}

// TestRefusedSetKeepsServedSETS: an edge that refuses a set named by the
// upstream's SETS must not re-serve that SETS, or downstream edges would be
// told of a set ID this edge does not serve.
func TestRefusedSetKeepsServedSETS(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	_, before := mustGet(t, e.srv.URL, "/.pkgcdn/sets", http.StatusOK)
	m.publish(testSet, map[string]string{"a": "2"}, publishOpts{expires: time.Now().Add(-time.Hour).Truncate(time.Second)})
	e.refresh(t)
	_, after := mustGet(t, e.srv.URL, "/.pkgcdn/sets", http.StatusOK)
	if string(after) != string(before) {
		t.Errorf("edge re-served the upstream SETS naming a refused set:\n%s\nwant the previous:\n%s", after, before)
	}
	if _, b := mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK); string(b) != "1" {
		t.Errorf("served %q, want the last good set's %q", b, "1")
	}
}

func TestExpiredLiveManifestServedDegraded(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"a": "1"})
	var mu sync.Mutex
	now := time.Now()
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) {
		c.Clock = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	e.refresh(t)
	mu.Lock()
	now = m1.Expires.Add(time.Minute)
	mu.Unlock()
	if len(e.Degraded()) != 1 || e.Health() == nil {
		t.Errorf("Degraded = %v, want one expired set", e.Degraded())
	}
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusOK)
	if string(b) != "1" {
		t.Errorf("expired live set served %q, want 1", b)
	}
}

func TestRestartServesWithoutUpstream(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m1 := m.publish(testSet, map[string]string{"All/a.pkg": "cached", "All/b.pkg": "not cached"})
	dir := t.TempDir()
	e := openTestEdge(t, dir, v, []string{up.URL}, nil)
	e.refresh(t)
	mustGet(t, e.srv.URL, "/"+testSet+"/All/a.pkg", http.StatusOK)
	waitCached(t, e.cache, cache.Key(digest.Sum([]byte("cached"))))
	e.srv.Close()
	e.cache.Close()
	m.setDown(http.StatusServiceUnavailable)

	e2 := openTestEdge(t, dir, v, []string{up.URL}, nil)
	if got := e2.liveID(testSet); got != m1.ID {
		t.Fatalf("after restart live = %s, want %s", got, m1.ID)
	}
	resp, b := mustGet(t, e2.srv.URL, "/"+testSet+"/All/a.pkg", http.StatusOK)
	if string(b) != "cached" || resp.Header.Get("Cache-Status") != csHit {
		t.Errorf("after restart: %q %q", b, resp.Header.Get("Cache-Status"))
	}
	mustGet(t, e2.srv.URL, "/"+testSet+"/All/nope.pkg", http.StatusNotFound)
	// Uncached while the upstream is down: a 5xx, never a 404.
	mustGet(t, e2.srv.URL, "/"+testSet+"/All/b.pkg", http.StatusBadGateway)
	// SETS is served from the verified copy.
	mustGet(t, e2.srv.URL, "/.pkgcdn/sets", http.StatusOK)
}

func TestFailoverBetweenUpstreams(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "one", "b": "two", "c": "three"})
	broken := newFakeMasterDown(t, http.StatusServiceUnavailable)
	refused := httptestClosedURL(t)
	e := newTestEdge(t, v, []string{refused, broken.URL, up.URL}, nil)
	e.refresh(t)
	for _, p := range []string{"a", "b", "c"} {
		_, b := mustGet(t, e.srv.URL, "/"+testSet+"/"+p, http.StatusOK)
		if len(b) == 0 {
			t.Errorf("GET %s: empty", p)
		}
	}
	// Sticky: after the failover the working upstream is asked first.
	e.pool.mu.Lock()
	cur := e.pool.cur
	e.pool.mu.Unlock()
	if cur != 2 {
		t.Errorf("sticky upstream = %d, want 2", cur)
	}
}

func TestUpstreamTimeoutIs504(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "one"})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	m.setObjectHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) { c.FirstByteTimeout = 50 * time.Millisecond })
	e.refresh(t)
	mustGet(t, e.srv.URL, "/"+testSet+"/a", http.StatusGatewayTimeout)
}

func TestRangeHeadAndConditional(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(256<<10, 5)
	m1 := m.publish(testSet, map[string]string{"All/r.pkg": body})
	g := newGate()
	m.setObjectHandler(g.serve)
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	p := "/" + testSet + "/All/r.pkg"

	// HEAD of an uncached file: answered from the manifest, no upstream.
	req, _ := http.NewRequest(http.MethodHead, e.srv.URL+p, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(body)) || m.objectFetches() != 0 {
		t.Errorf("HEAD = %d, length %d, %d fetches", resp.StatusCode, resp.ContentLength, m.objectFetches())
	}
	// Conditionals answered locally.
	etag := `"` + digest.Sum([]byte(body)).String() + `"`
	mustGet(t, e.srv.URL, p, http.StatusNotModified, "If-None-Match", etag)
	mustGet(t, e.srv.URL, p, http.StatusNotModified, "If-Modified-Since", m1.ID.Time().Format(http.TimeFormat))
	mustGet(t, e.srv.URL, p, http.StatusPartialContent, "If-Modified-Since", m1.ID.Time().Add(-time.Second).Format(http.TimeFormat), "Range", "bytes=0-0")
	// That GET started the fill; wait until the upstream sent half.
	select {
	case <-g.sentHalf:
	case <-waitCtx(t).Done():
		t.Fatal("upstream never sent")
	}
	// A range inside the part that arrived is answered while the rest is held.
	resp, b := mustGet(t, e.srv.URL, p, http.StatusPartialContent, "Range", "bytes=100-199")
	if string(b) != body[100:200] {
		t.Errorf("in-flight range: wrong bytes")
	}
	if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-199/%d", len(body)) {
		t.Errorf("Content-Range = %q", cr)
	}
	close(g.release)
	// A resumed download (pkg: Range bytes=N-, no If-Range) once cached.
	_, b = mustGet(t, e.srv.URL, p, http.StatusPartialContent, "Range", fmt.Sprintf("bytes=%d-", len(body)-1000))
	if string(b) != body[len(body)-1000:] {
		t.Errorf("tail range: wrong bytes")
	}
	// Absurd ranges.
	mustGet(t, e.srv.URL, p, http.StatusRequestedRangeNotSatisfiable, "Range", "bytes=999999999-")
	// net/http answers a malformed Range 416 (not the whole file): fine for pkg.
	mustGet(t, e.srv.URL, p, http.StatusRequestedRangeNotSatisfiable, "Range", "bytes=garbage")
	// A flood of ranges (multipart amplification) is ignored: the plain file.
	_, b = mustGet(t, e.srv.URL, p, http.StatusOK, "Range", "bytes="+strings.Repeat("1-2,", 2000)+"3-4")
	if len(b) != len(body) {
		t.Errorf("range flood: %d bytes, want %d", len(b), len(body))
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("%d upstream fetches, want 1", n)
	}
}

func TestLongPollSets(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"a": "1"})
	e := newTestEdge(t, v, []string{up.URL}, nil)
	e.refresh(t)
	resp, _ := mustGet(t, e.srv.URL, "/.pkgcdn/sets", http.StatusOK)
	etag := strings.Trim(resp.Header.Get("ETag"), `"`)
	done := make(chan *http.Response, 1)
	go func() {
		resp, _, err := get(t, e.srv.URL, "/.pkgcdn/sets?wait="+etag)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	m2 := m.publish(testSet, map[string]string{"a": "2"})
	e.refresh(t)
	select {
	case resp := <-done:
		if resp == nil || resp.StatusCode != http.StatusOK || strings.Trim(resp.Header.Get("ETag"), `"`) == etag {
			t.Fatalf("long poll answered %v", resp)
		}
	case <-waitCtx(t).Done():
		t.Fatal("long poll not answered after the switch")
	}
	_ = m2
	// A stale ETag is answered at once.
	mustGet(t, e.srv.URL, "/.pkgcdn/sets?wait=0000", http.StatusOK)
}

func TestRunFollowsUpstreamByLongPoll(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	m.publish(testSet, map[string]string{"meta.conf": "1", "All/x.pkg": "x"})
	e := newTestEdge(t, v, []string{up.URL}, func(c *Config, _ *cache.Config) {
		c.NoLongPoll = false
		c.Prefetch = 0
		c.NotifyInterval = time.Millisecond
	})
	ctx := waitCtx(t)
	done := make(chan error, 1)
	runCtx, stop := contextWithCancel(t)
	go func() { done <- e.Run(runCtx) }()
	t.Cleanup(func() { stop(); <-done })
	waitLive(ctx, t, e, testSet, 1)
	m2 := m.publish(testSet, map[string]string{"meta.conf": "2", "All/x.pkg": "x"})
	waitLive(ctx, t, e, testSet, 2)
	if got := e.liveID(testSet); got != m2.ID {
		t.Fatalf("live = %s, want %s", got, m2.ID)
	}
}

func TestChainedEdges(t *testing.T) {
	t.Parallel()
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(100<<10, 9)
	m1 := m.publish(testSet, map[string]string{"All/c.pkg": body, "meta.conf": "m"})
	e1 := newTestEdge(t, v, []string{up.URL}, nil)
	e1.refresh(t)
	e2 := newTestEdge(t, v, []string{e1.srv.URL}, nil)
	e2.refresh(t)
	if got := e2.liveID(testSet); got != m1.ID {
		t.Fatalf("chained edge live = %s, want %s", got, m1.ID)
	}
	for range 3 {
		_, b := mustGet(t, e2.srv.URL, "/"+testSet+"/All/c.pkg", http.StatusOK)
		if string(b) != body {
			t.Fatal("chained edge served wrong bytes")
		}
	}
	if n := m.objectFetches(); n != 1 {
		t.Errorf("master object fetches = %d, want 1", n)
	}
	// An object by hash not in any manifest: fetched and verified.
	extra := "not in a set"
	sum := digest.Sum([]byte(extra))
	m.mu.Lock()
	m.objects[sum] = []byte(extra)
	m.mu.Unlock()
	_, b := mustGet(t, e2.srv.URL, "/.pkgcdn/objects/sha256/"+sum.String(), http.StatusOK)
	if string(b) != extra {
		t.Errorf("object by hash = %q", b)
	}
	nowhere := "/.pkgcdn/objects/sha256/" + digest.Sum([]byte("nowhere")).String()
	for range 3 {
		mustGet(t, e2.srv.URL, nowhere, http.StatusNotFound)
	}
	if n := m.count(nowhere); n != 1 {
		t.Errorf("an absent object was asked upstream %d times, want 1 (remembered 404)", n)
	}
}
