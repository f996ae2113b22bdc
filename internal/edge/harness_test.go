package edge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// testKeys returns a signer and a verifier trusting it.
func testKeys(t testing.TB) (*sign.Signer, *sign.Verifier) {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "key")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// baseTime is the first set ID of the tests; later IDs count up from it.
var baseTime = time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC)

// fakeMaster is a pkgcdn master in memory: SETS, manifests and objects, with
// request counting and fault injection for objects.
type fakeMaster struct {
	t      testing.TB
	signer *sign.Signer

	mu        sync.Mutex // guards everything below
	sets      setid.Sets
	setsData  []byte
	setsSig   []byte
	manifests map[string][2][]byte // "set/id" → data, sig
	live      map[string]*manifest.Manifest
	objects   map[digest.SHA256][]byte
	hits      map[string]int // request path → count
	changed   chan struct{}
	// object, if set, serves an object instead of the default handler.
	object func(w http.ResponseWriter, r *http.Request, data []byte)
	// down, if set, answers every request with this status.
	down int
}

func newFakeMaster(t testing.TB, s *sign.Signer) (*fakeMaster, *httptest.Server) {
	f := &fakeMaster{t: t, signer: s, manifests: map[string][2][]byte{}, live: map[string]*manifest.Manifest{},
		objects: map[digest.SHA256][]byte{}, hits: map[string]int{}, changed: make(chan struct{})}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

// count returns how often path was requested.
func (f *fakeMaster) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

// objectFetches counts requests for objects.
func (f *fakeMaster) objectFetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for p, c := range f.hits {
		if strings.HasPrefix(p, "/.pkgcdn/objects/") {
			n += c
		}
	}
	return n
}

func (f *fakeMaster) totalHits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.hits {
		n += c
	}
	return n
}

func (f *fakeMaster) setObjectHandler(h func(w http.ResponseWriter, r *http.Request, data []byte)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.object = h
}

func (f *fakeMaster) setDown(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = status
}

// publishOpts tweak one publish.
type publishOpts struct {
	expires time.Time // if zero, 30 days after creation
	id      setid.ID  // if zero, the next ID
}

// publish makes files the live set of name and returns its manifest.
func (f *fakeMaster) publish(name string, files map[string]string, opts ...publishOpts) *manifest.Manifest {
	f.t.Helper()
	var o publishOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	prev := f.live[name]
	id := o.id
	if id.IsZero() {
		last := setid.FromTime(baseTime)
		for _, e := range f.sets {
			if e.ID.After(last) {
				last = e.ID
			}
		}
		id = setid.Next(last, baseTime)
	}
	created := time.Now().UTC().Truncate(time.Second)
	m := &manifest.Manifest{Set: name, ID: id, Created: created, Expires: o.expires}
	if m.Expires.IsZero() {
		m.Expires = created.Add(manifest.DefaultValidity)
	}
	if prev != nil && id.After(prev.ID) {
		m.Previous = prev.ID
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		data := []byte(files[p])
		sum := digest.Sum(data)
		f.objects[sum] = data
		mod := id
		if prev != nil {
			if pe, ok := prev.Lookup(p); ok && pe.SHA256 == sum {
				mod = pe.Modified
			}
		}
		m.Entries = append(m.Entries, manifest.Entry{Path: p, Size: int64(len(data)), SHA256: sum, Modified: mod})
	}
	if !o.expires.IsZero() && !o.expires.After(created) {
		// Encoding refuses an expiry before creation: backdate creation.
		m.Created = o.expires.Add(-time.Hour)
	}
	data, sig, err := m.Sign(f.signer)
	if err != nil {
		f.t.Fatal(err)
	}
	f.manifests[name+"/"+id.String()] = [2][]byte{data, sig}
	f.live[name] = m
	f.setSetsLocked(f.sets.With(setid.Entry{Set: name, ID: id, Manifest: digest.Sum(data)}))
	return m
}

// setSets publishes s as the signed SETS (a test may name anything in it).
func (f *fakeMaster) setSets(s setid.Sets) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setSetsLocked(s)
}

func (f *fakeMaster) setSetsLocked(s setid.Sets) {
	f.sets = s
	f.setsData, f.setsSig = manifest.SignSets(s, f.signer)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeMaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.hits[r.URL.Path]++
	down := f.down
	f.mu.Unlock()
	if down != 0 {
		w.WriteHeader(down)
		return
	}
	t, err := route.Parse(r.URL.Path, func(string) bool { return false })
	if err != nil {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	switch t.Kind {
	case route.Sets, route.SetsSig:
		etag := `"` + digest.Sum(f.setsData).String() + `"`
		if wait := r.URL.Query().Get("wait"); wait != "" && strings.Trim(etag, `"`) == wait {
			ch := f.changed
			f.mu.Unlock()
			select {
			case <-ch:
			case <-r.Context().Done():
				return
			}
			f.mu.Lock()
			etag = `"` + digest.Sum(f.setsData).String() + `"`
		}
		data := f.setsData
		if t.Kind == route.SetsSig {
			data = f.setsSig
		}
		f.mu.Unlock()
		if data == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		_, _ = w.Write(data)
	case route.Manifest, route.ManifestSig:
		m, ok := f.manifests[t.Set+"/"+t.ID.String()]
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if t.Kind == route.ManifestSig {
			_, _ = w.Write(m[1])
		} else {
			_, _ = w.Write(m[0])
		}
	case route.Object:
		data, ok := f.objects[t.Hash]
		h := f.object
		f.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if h != nil {
			h(w, r, data)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		_, _ = w.Write(data)
	default:
		f.mu.Unlock()
		http.NotFound(w, r)
	}
}

// testEdge is an edge under test with its server.
type testEdge struct {
	*Edge
	srv   *httptest.Server
	cache *cache.Cache
	dir   string
}

// newTestEdge starts an edge in front of upstreams. mod may change the Config.
func newTestEdge(t testing.TB, v *sign.Verifier, upstreams []string, mod func(*Config, *cache.Config)) *testEdge {
	t.Helper()
	dir := t.TempDir()
	return openTestEdge(t, dir, v, upstreams, mod)
}

func openTestEdge(t testing.TB, dir string, v *sign.Verifier, upstreams []string, mod func(*Config, *cache.Config)) *testEdge {
	t.Helper()
	cc := cache.Config{Dir: filepath.Join(dir, "cache"), MaxBytes: 1 << 30}
	cfg := Config{Upstreams: upstreams, Verifier: v, StateDir: filepath.Join(dir, "state"), NoLongPoll: true,
		Prefetch: -1, FirstByteTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg, &cc)
	}
	c, err := cache.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cache = c
	e, err := New(cfg)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	te := &testEdge{Edge: e, srv: srv, cache: c, dir: dir}
	t.Cleanup(func() {
		e.ReleaseWaiters()
		srv.Close()
		c.Close()
	})
	return te
}

// refresh runs one synchronous re-read of the upstream.
func (te *testEdge) refresh(t testing.TB) {
	t.Helper()
	if err := te.Edge.refresh(t.Context()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

// liveID returns the live set ID the edge serves for set.
func (te *testEdge) liveID(set string) setid.ID {
	st, ok := te.snap.Load().sets[set]
	if !ok {
		return setid.ID{}
	}
	return st.live.ID
}

// get fetches path from the edge; hdr are name, value pairs.
func get(t testing.TB, base, path string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// mustGet is get that fails the test on a transport error or an unexpected status.
func mustGet(t testing.TB, base, path string, want int, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	resp, b, err := get(t, base, path, hdr...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s = %d %q, want %d", path, resp.StatusCode, b[:min(len(b), 200)], want)
	}
	return resp, b
}

// gate is an upstream object handler that sends the first half, waits for
// release, then sends the rest.
type gate struct {
	sentHalf chan struct{}
	release  chan struct{}
	once     sync.Once
}

func newGate() *gate { return &gate{sentHalf: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) serve(w http.ResponseWriter, r *http.Request, data []byte) {
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	half := len(data) / 2
	_, _ = w.Write(data[:half])
	http.NewResponseController(w).Flush()
	g.once.Do(func() { close(g.sentHalf) })
	select {
	case <-g.release:
	case <-r.Context().Done():
		return
	}
	_, _ = w.Write(data[half:])
}

// pattern returns n deterministic bytes.
func pattern(n int, seed byte) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ seed ^ byte(i>>11)
	}
	return string(b)
}

// waitCtx bounds a test's blocking wait.
func waitCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newFakeMasterDown is an upstream that answers every request with status.
func newFakeMasterDown(t testing.TB, status int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv
}

// httptestClosedURL returns the URL of a server that is no longer listening.
func httptestClosedURL(t testing.TB) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL
	srv.Close()
	return u
}

func contextWithCancel(t testing.TB) (context.Context, context.CancelFunc) {
	return context.WithCancel(t.Context())
}

// waitLive waits until the edge switched to the n-th published set (by
// long-polling its own /.pkgcdn/sets), failing at ctx's deadline.
func waitLive(ctx context.Context, t testing.TB, e *testEdge, set string, n int) {
	t.Helper()
	want := setid.Next(setid.FromTime(baseTime), baseTime)
	for i := 1; i < n; i++ {
		want = setid.Next(want, baseTime)
	}
	for {
		snap := e.snap.Load()
		if st, ok := snap.sets[set]; ok && !want.After(st.live.ID) {
			return
		}
		select {
		case <-snap.changed:
		case <-ctx.Done():
			t.Fatalf("edge did not switch %s to %s", set, want)
		}
	}
}

// waitCached waits until key is a complete cache entry: the cache commits
// (fsync, rename) just after the last reader got the verified bytes, so a
// test that wants a hit label waits for the commit. No sleeping: the commit
// is a few syscalls away.
func waitCached(t testing.TB, c *cache.Cache, key cache.Key) {
	t.Helper()
	ctx := waitCtx(t)
	for ctx.Err() == nil {
		if o, err := c.Get(key); err == nil {
			o.Close()
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("%s never committed", key)
}
