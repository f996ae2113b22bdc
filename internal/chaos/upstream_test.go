package chaos

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// published is a master serving one published set.
type published struct {
	e      *env
	root   string
	master *server
	m      *manifest.Manifest
}

// publishSet publishes a sample repository into a new root and starts a
// master on it.
func publishSet(t testing.TB, seed uint64, packages int, total int64) *published {
	t.Helper()
	e := newEnv(t)
	p := &published{e: e, root: e.path("root")}
	src := makeRepo(t, e.path("src"), seed, packages, total)
	id := e.publishLocal(t, p.root, src)
	p.master = e.startMaster(t, p.root)
	e.waitSet(t, p.master.url, id)
	p.m = e.live(t, p.master.url)
	return p
}

// bySize returns the set's entries with distinct content, largest first
// (faults are set per object, and Latest/pkg.pkg is All/pkg-*.pkg).
func (p *published) bySize() []manifest.Entry {
	ents := slices.Clone(p.m.Entries)
	slices.SortStableFunc(ents, func(a, b manifest.Entry) int { return cmp.Compare(b.Size, a.Size) })
	seen := map[digest.SHA256]bool{}
	return slices.DeleteFunc(ents, func(e manifest.Entry) bool {
		dup := seen[e.SHA256]
		seen[e.SHA256] = true
		return dup
	})
}

// fileURL is the URL of a set file under base.
func fileURL(base, set, rel string) string {
	b, _ := url.Parse(base)
	return route.FileURL(b, set, rel)
}

// gatewayStatus reports whether a status says "could not get it upstream":
// what pkg retries on another mirror, unlike a final 404.
func gatewayStatus(s int) bool {
	return s == http.StatusBadGateway || s == http.StatusServiceUnavailable || s == http.StatusGatewayTimeout
}

// checkNotBad requires that a response for ent is either its exact bytes
// with a 200 (or 206 for what was asked), a broken connection, or a
// 502/503/504 — never a 404, a short 200 or wrong bytes as a whole body.
// It reports whether the client got the whole right file.
func checkNotBad(t testing.TB, what string, r response, ent manifest.Entry) bool {
	t.Helper()
	switch {
	case r.err != nil:
		// A transport error or a body cut off (unexpected EOF): what a
		// client of an aborted fill must see.
		return false
	case r.status == http.StatusOK:
		if got := digest.Sum(r.body); got != ent.SHA256 || int64(len(r.body)) != ent.Size {
			t.Errorf("%s: %s: a complete 200 with %d bytes sha256 %s, want %d bytes %s", what, ent.Path, len(r.body), got, ent.Size, ent.SHA256)
			return false
		}
		return true
	case gatewayStatus(r.status):
		return false
	default:
		t.Errorf("%s: %s: status %d, want the file, a broken connection or 502/503/504", what, ent.Path, r.status)
		return false
	}
}

// TestEdgeFaultyUpstreamNeverServesBadBytes puts a manifest-aware edge in
// front of an upstream that, for one object each, closes mid-file, stalls
// before the headers or mid-file, sends wrong bytes with the right length
// (near the end, at the start), sends more or fewer bytes than the object or
// than its Content-Length (the right bytes followed by junk may be served:
// they are the object), or answers 500/503/404. What must hold: no client
// ever gets wrong bytes as a complete 200 (a broken connection or a
// 502/503/504 instead, never a 404), nothing bad is cached (a second request
// still fails the same way, not with bad bytes), and once the upstream
// serves the object right again the edge serves it byte-correct.
func TestEdgeFaultyUpstreamNeverServesBadBytes(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 3, 40, 6*sampleset.MiB)
	up := newFaulty(t, p.master.url, p.root)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{up.url}, "--first-byte-timeout", "2s", "--prefetch", "-1")
	p.e.waitSet(t, edge.url, p.m.ID)

	faults := []fault{faultCloseMid, faultStallHead, faultStallMid, faultWrongBytes, faultWrongEarly,
		faultLonger, faultMore, faultFewer, faultShort, fault500, fault503, fault404, faultRefuse}
	ents := p.bySize()
	t.Run("faults", func(t *testing.T) {
		for i, fl := range faults {
			ent := ents[i]
			t.Run(fl.String(), func(t *testing.T) {
				t.Parallel()
				up.set(ent.SHA256.String(), fl, 0)
				u := fileURL(edge.url, testSet, ent.Path)
				tries := 2 // the second proves nothing bad was kept
				if fl == faultStallMid {
					tries = 1 // each try costs the edge's 30 s upstream stall timeout
				}
				for try := range tries {
					if checkNotBad(t, fl.String(), do(http.MethodGet, u, nil), ent) && fl != faultLonger && fl != faultMore {
						t.Errorf("%s: try %d got the right file although the upstream never sent it", fl, try)
					}
				}
				up.set(ent.SHA256.String(), faultNone, 0)
				r := do(http.MethodGet, u, nil)
				if !checkNotBad(t, "recovered", r, ent) {
					t.Errorf("%s: after the upstream recovered: status %d, err %v", fl, r.status, r.err)
				}
			})
		}
	})
	// The mismatches were noticed and counted, not just dropped.
	if n := metric(t, edge, "pkgcdn_edge_cache_verify_failures_total"); n < 2 {
		t.Errorf("pkgcdn_edge_cache_verify_failures_total = %v after two objects with wrong bytes, want ≥ 2", n)
	}
}

// TestEdgeFailsOverBetweenUpstreams gives an edge two --upstream URLs of
// which the first is unreachable (nothing listens), answers every object
// with 503, or closes every object connection before answering. What must
// hold: the edge follows the set and serves every file byte-correct from
// the second upstream; a client never notices.
func TestEdgeFailsOverBetweenUpstreams(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 10, 30, 3*sampleset.MiB)
	for _, tc := range []struct {
		name  string
		first func(t *testing.T) string
	}{
		{"unreachable", func(t *testing.T) string { return "http://" + freeAddr(t) }},
		{"503", func(t *testing.T) string {
			f := newFaulty(t, p.master.url, p.root)
			f.set("*", fault503, 0)
			return f.url
		}},
		{"connection closed", func(t *testing.T) string {
			f := newFaulty(t, p.master.url, p.root)
			f.set("*", faultRefuse, 0)
			return f.url
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			edge := p.e.startEdge(t, t.TempDir(), []string{tc.first(t), p.master.url}, "--prefetch", "-1")
			p.e.waitSet(t, edge.url, p.m.ID)
			fetchAll(t, edge.url, p.m)
		})
	}
}

// TestEdgeUpstreamDown kills the edge's only upstream (the master, SIGKILL)
// after the edge cached half of the set. What must hold: cached files are
// still served byte-correct; the others get 502/503/504 — never 404, which
// pkg would not retry elsewhere; once the master is back (restarted on the
// same root, nothing lost) the edge serves them byte-correct.
func TestEdgeUpstreamDown(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 11, 30, 3*sampleset.MiB)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{p.master.url}, "--prefetch", "-1")
	p.e.waitSet(t, edge.url, p.m.ID)
	ents := p.bySize()
	cached, uncached := ents[:len(ents)/2], ents[len(ents)/2:]
	for _, ent := range cached {
		if r := get(t, fileURL(edge.url, testSet, ent.Path)); !checkNotBad(t, "filling", r, ent) {
			t.Fatalf("filling %s: status %d", ent.Path, r.status)
		}
	}
	p.master.p.Kill()
	for _, ent := range cached {
		if r := get(t, fileURL(edge.url, testSet, ent.Path)); !checkNotBad(t, "cached, upstream down", r, ent) {
			t.Errorf("cached %s with the upstream down: status %d", ent.Path, r.status)
		}
	}
	for _, ent := range uncached {
		r := do(http.MethodGet, fileURL(edge.url, testSet, ent.Path), nil)
		if r.err != nil || !gatewayStatus(r.status) {
			t.Errorf("uncached %s with the upstream down: status %d, err %v; want 502/503/504", ent.Path, r.status, r.err)
		}
	}
	p.master.restart(t)
	fetchAll(t, edge.url, p.m)
	p.e.verifyRoot(t, p.root)
}

// TestPlainEdgeFaultyUpstream puts a plain-mode edge (no --trusted-key: a
// pull-through cache of any package server, `--set-id-url` on the master's
// SETS) in front of an upstream that, for one file each, closes mid-file,
// sends fewer bytes than its Content-Length, stalls before the headers,
// answers 500 or 503, or closes the connection. (Wrong bytes of the right
// length cannot be detected without a manifest: that is what
// manifest-aware mode is for.) What must hold: no client gets a short or
// wrong 200 (a broken connection or a 502/503/504 instead, never a 404),
// nothing bad is cached, and the file is served byte-correct once the
// upstream recovers.
func TestPlainEdgeFaultyUpstream(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 27, 20, 3*sampleset.MiB)
	up := newFaulty(t, p.master.url, p.root)
	edge := startServer(t, "--edge", "--upstream", up.url, "--cache-dir", p.e.path("cache"),
		"--set-id-url", "/.pkgcdn/sets", "--poll", "1s", "--first-byte-timeout", "2s", "--prefetch", "-1")
	ents := p.bySize()
	t.Run("faults", func(t *testing.T) {
		for i, fl := range []fault{faultCloseMid, faultFewer, faultStallHead, fault500, fault503, faultRefuse} {
			ent := ents[i]
			t.Run(fl.String(), func(t *testing.T) {
				t.Parallel()
				path := "/" + testSet + "/" + ent.Path
				up.set(path, fl, 0)
				u := fileURL(edge.url, testSet, ent.Path)
				for try := range 2 {
					if checkNotBad(t, fl.String(), do(http.MethodGet, u, nil), ent) {
						t.Errorf("%s: try %d got the right file although the upstream never sent it", fl, try)
					}
				}
				up.set(path, faultNone, 0)
				if r := do(http.MethodGet, u, nil); !checkNotBad(t, "recovered", r, ent) {
					t.Errorf("%s: after the upstream recovered: status %d, err %v", fl, r.status, r.err)
				}
			})
		}
	})
}
