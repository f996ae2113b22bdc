package chaos

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// stage is an upstream written for the tests: it proxies the master, but
// answers the paths the test overrides (SETS, manifests, signatures) with
// the bytes the test forged.
type stage struct {
	url   string
	proxy *httputil.ReverseProxy
	mu    sync.Mutex        // guards files
	files map[string][]byte // URL path → body
}

func newStage(t testing.TB, master string) *stage {
	t.Helper()
	u, _ := url.Parse(master)
	s := &stage{proxy: httputil.NewSingleHostReverseProxy(u), files: map[string][]byte{}}
	s.proxy.FlushInterval = -1
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + ln.Addr().String()
	srv := &http.Server{Handler: s}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

func (s *stage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		s.proxy.ServeHTTP(w, r)
		return
	}
	w.Header().Set("ETag", `"`+digest.Sum(b).String()+`"`)
	_, _ = w.Write(b)
}

// serve makes the stage answer these paths (nil: back to the master).
func (s *stage) serve(files map[string][]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files = files
}

// forger signs manifests and SETS files as the test wants them.
type forger struct {
	t       testing.TB
	trusted *sign.Signer
	rogue   *sign.Signer // a key no one trusts
}

func newForger(t testing.TB, e *env) *forger {
	t.Helper()
	trusted, err := sign.LoadSigner(e.key)
	if err != nil {
		t.Fatal(err)
	}
	prefix := e.path("rogue")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	rogue, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	return &forger{t: t, trusted: trusted, rogue: rogue}
}

// forged is one forged SETS with the manifest it names, as stage files.
func (f *forger) forge(base *manifest.Manifest, id setid.ID, expires time.Time, setsKey, manKey *sign.Signer, mangle func(m *manifest.Manifest)) map[string][]byte {
	f.t.Helper()
	m := *base
	m.ID, m.Previous, m.Created, m.Expires = id, base.ID, id.Time(), expires
	m.Entries = append([]manifest.Entry(nil), base.Entries...)
	if mangle != nil {
		mangle(&m)
	}
	mdata, msig, err := m.Sign(manKey)
	if err != nil {
		f.t.Fatal(err)
	}
	sets, ssig := manifest.SignSets(setid.Sets{{Set: m.Set, ID: id, Manifest: digest.Sum(mdata)}}, setsKey)
	u, _ := url.Parse("http://x")
	path := func(s string) string { p, _ := url.Parse(s); return p.Path }
	return map[string][]byte{
		"/.pkgcdn/sets":                              sets,
		"/.pkgcdn/sets.minisig":                      ssig,
		path(route.ManifestURL(u, m.Set, id, false)): mdata,
		path(route.ManifestURL(u, m.Set, id, true)):  msig,
	}
}

// TestEdgeRefusesForgedSetsAndManifests offers a manifest-aware edge, one at
// a time, through an upstream that forges them: a SETS signed by an unknown
// key, a manifest signed by an unknown key, a rollback to an older set ID
// (properly signed), an expired manifest (properly signed), a SETS whose
// manifest hash does not match the manifest served, and a manifest whose
// signature names another set ID. What must hold for each: the edge refuses
// it and counts it (pkgcdn_edge_verify_failures_total), keeps serving the
// last good set — same ID in its SETS, every file byte-correct — and
// switches normally once the upstream is honest again.
func TestEdgeRefusesForgedSetsAndManifests(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 14, 20, 2*sampleset.MiB)
	st := newStage(t, p.master.url)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{st.url}, "--poll", "200ms", "--no-long-poll")
	p.e.waitSet(t, edge.url, p.m.ID)
	fetchAll(t, edge.url, p.m)
	f := newForger(t, p.e)
	next := setid.Next(p.m.ID, time.Now())
	valid := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		name  string
		files map[string][]byte
	}{
		{"SETS signed by an unknown key", f.forge(p.m, next, valid, f.rogue, f.rogue, nil)},
		{"manifest signed by an unknown key", f.forge(p.m, next, valid, f.trusted, f.rogue, nil)},
		{"rollback to an older set ID", f.forge(p.m, setid.FromTime(p.m.ID.Time().Add(-time.Hour)), valid, f.trusted, f.trusted,
			func(m *manifest.Manifest) {
				m.Previous = setid.ID{}
				for i := range m.Entries {
					m.Entries[i].Modified = m.ID
				}
			})},
		{"expired manifest", f.forge(p.m, next, time.Now().Add(-time.Minute), f.trusted, f.trusted,
			func(m *manifest.Manifest) { m.Created = m.Expires.Add(-time.Hour) })},
		{"SETS disagrees with the manifest", func() map[string][]byte {
			files := f.forge(p.m, next, valid, f.trusted, f.trusted, nil)
			other := f.forge(p.m, next, valid.Add(time.Minute), f.trusted, f.trusted, nil)
			for k, v := range other {
				if strings.HasPrefix(k, "/.pkgcdn/manifest/") {
					files[k] = v // a valid manifest, but not the one SETS names
				}
			}
			return files
		}()},
		{"manifest of a tampered file list", f.forge(p.m, next, valid, f.trusted, f.trusted, func(m *manifest.Manifest) {
			// Properly signed, but its object is not what the path had: the
			// edge must serve these bytes only if they match, which they do
			// not (the master has no such object): a 502, never wrong bytes.
			m.Entries[0].SHA256 = digest.Sum([]byte("no such object"))
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := metric(t, edge, "pkgcdn_edge_verify_failures_total")
			st.serve(tc.files)
			defer st.serve(nil)
			if tc.name == "manifest of a tampered file list" {
				// Valid and signed: the edge switches; the bad entry can
				// never be served as a complete file.
				waitServing(t, edge.url, next)
				ent := p.m.Entries[0]
				r := do(http.MethodGet, fileURL(edge.url, testSet, ent.Path), nil)
				if r.err == nil && r.status == http.StatusOK {
					t.Errorf("GET %s of an entry whose object does not exist: a complete 200", ent.Path)
				}
				return
			}
			eventually(t, 30*time.Second, "the edge to refuse "+tc.name, func() bool {
				return metric(t, edge, "pkgcdn_edge_verify_failures_total") > before
			})
			// The edge's SETS still names the last good set (downstream edges
			// follow it), and files are answered from that set.
			s, _ := p.e.sets(t, edge.url)
			if ent, _ := s.Lookup(testSet); ent.ID != p.m.ID {
				t.Errorf("after %s the edge's SETS names %s, want %s", tc.name, ent.ID, p.m.ID)
			}
			if r := get(t, fileURL(edge.url, testSet, sampleset.MetaConf)); r.header.Get("X-Pkgcdn-Set-Id") != p.m.ID.String() {
				t.Errorf("after %s the edge serves set %q, want %s", tc.name, r.header.Get("X-Pkgcdn-Set-Id"), p.m.ID)
			}
			fetchAll(t, edge.url, p.m)
		})
	}
}

// TestForgedPushNotices POSTs notices to an edge's /.pkgcdn/notify: an
// unknown set, an old set ID (a replay), a future ID for a set the master
// never published, garbage, a huge body, a GET. What must hold: each gets a
// 4xx or 202 (a notice is only a hint), a flood of them is rate-limited,
// and the edge's set is unchanged: same ID, every file byte-correct.
func TestForgedPushNotices(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 15, 20, 2*sampleset.MiB)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{p.master.url})
	p.e.waitSet(t, edge.url, p.m.ID)
	notify := edge.url + "/.pkgcdn/notify"
	old := setid.FromTime(p.m.ID.Time().Add(-24 * time.Hour))
	future := setid.FromTime(time.Now().Add(24 * time.Hour))
	for _, tc := range []struct {
		name, method, body string
		ok                 func(int) bool
	}{
		{"unknown set", "POST", `{"set":"NoSuch:1:x/latest","id":"` + future.String() + `"}`, accepted},
		{"replayed old ID", "POST", `{"set":"` + testSet + `","id":"` + old.String() + `"}`, accepted},
		{"future ID", "POST", `{"set":"` + testSet + `","id":"` + future.String() + `"}`, accepted},
		{"bad set name", "POST", `{"set":"../../etc","id":"` + future.String() + `"}`, clientError},
		{"bad ID", "POST", `{"set":"` + testSet + `","id":"yesterday"}`, clientError},
		{"garbage", "POST", "\x00\x01not json at all", clientError},
		{"huge body", "POST", `{"set":"` + strings.Repeat("a", 1<<20) + `"}`, clientError},
		{"GET", "GET", "", func(s int) bool { return s == http.StatusMethodNotAllowed }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(tc.method, notify, strings.NewReader(tc.body), "Content-Type", "application/json")
			if r.err != nil || !tc.ok(r.status) {
				t.Errorf("%s %s: status %d, err %v", tc.method, tc.name, r.status, r.err)
			}
		})
	}
	// A flood: every one answered, nothing changes.
	for i := range 500 {
		body := fmt.Sprintf(`{"set":%q,"id":%q}`, testSet, setid.FromTime(future.Time().Add(time.Duration(i)*time.Second)))
		if r := do("POST", notify, strings.NewReader(body)); r.err != nil || !accepted(r.status) {
			t.Fatalf("notice %d of a flood: status %d, err %v", i, r.status, r.err)
		}
	}
	s, _ := p.e.sets(t, edge.url)
	if ent, _ := s.Lookup(testSet); ent.ID != p.m.ID {
		t.Errorf("after forged notices the edge's SETS names %s, want %s", ent.ID, p.m.ID)
	}
	fetchAll(t, edge.url, p.m)
}

// waitServing polls base until a set file is answered from set id: the
// edge exposes no event for "switched" other than its answers.
func waitServing(t testing.TB, base string, id setid.ID) {
	t.Helper()
	eventually(t, 30*time.Second, "serving set "+id.String(), func() bool {
		r := do(http.MethodGet, fileURL(base, testSet, sampleset.MetaConf), nil)
		return r.err == nil && r.header.Get("X-Pkgcdn-Set-Id") == id.String()
	})
}

func accepted(s int) bool {
	return s == http.StatusAccepted || s == http.StatusOK || s == http.StatusNoContent
}
func clientError(s int) bool { return s >= 400 && s < 500 }

// TestTamperedObjectOnMaster overwrites, on the master's disk, an object of
// the live set that no edge has cached yet (chmod u+w, same size, other
// bytes). What must hold: `pkgpublish verify --root` reports it (exit 3);
// an edge never serves the tampered bytes as a complete file (a broken
// connection or 502, not a 200 with those bytes), and keeps serving every
// other file byte-correct.
func TestTamperedObjectOnMaster(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 16, 20, 2*sampleset.MiB)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{p.master.url}, "--prefetch", "-1")
	p.e.waitSet(t, edge.url, p.m.ID)
	victim := p.bySize()[0]
	h := victim.SHA256.String()
	obj := filepath.Join(p.root, "objects", "sha256", h[:2], h)
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(obj, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runErr(t, bin("pkgpublish"), "verify", "--root", p.root, "--pubkey", p.e.pub)
	if err == nil || !strings.Contains(out, victim.Path) {
		t.Errorf("pkgpublish verify --root after tampering: err %v, output does not name %s:\n%s", err, victim.Path, out)
	}
	for range 2 {
		r := do(http.MethodGet, fileURL(edge.url, testSet, victim.Path), nil)
		if r.err == nil && r.status == http.StatusOK {
			t.Errorf("the edge served the tampered %s as a complete 200 (sha256 %s)", victim.Path, digest.Sum(r.body))
		}
		if r.err == nil && bytes.Equal(r.body, data) {
			t.Errorf("the edge served the tampered bytes of %s", victim.Path)
		}
	}
	if n := metric(t, edge, "pkgcdn_edge_cache_verify_failures_total"); n == 0 {
		t.Errorf("the tampered object was not counted as a verify failure")
	}
	for _, ent := range p.m.Entries {
		if ent.SHA256 == victim.SHA256 {
			continue
		}
		r := get(t, fileURL(edge.url, testSet, ent.Path))
		checkNotBad(t, "untampered", r, ent)
		if r.status != http.StatusOK {
			t.Errorf("GET %s: status %d", ent.Path, r.status)
		}
	}
}
