package chaos

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// TestManifestExpiry publishes a set whose manifest is valid for 10 s
// (`pkgpublish publish --valid 10s`: a master and edges whose clocks run
// ahead see the same). What must hold: an edge that switched to it while
// it was valid keeps serving it byte-correct after it expired, and both
// its /healthz and the master's report degraded; a fresh edge started
// after the expiry never switches to it (refused and counted) and never
// serves its files.
func TestManifestExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 17, 20, 2*sampleset.MiB)
	master := e.startMaster(t, root)
	e.publishRemote(t, master.url, src)
	edge := e.startEdge(t, e.path("cache1"), []string{master.url}, "--poll", "300ms")

	bump(t, src, 18)
	id := e.publishRemote(t, master.url, src, "--valid", "10s")
	waitServing(t, edge.url, id)
	m := e.manifest(t, master.url, testSet, id)
	eventually(t, time.Minute, "the manifest to expire", func() bool { return time.Now().After(m.Expires) })

	fetchAll(t, edge.url, m)
	for _, s := range []*server{edge, master} {
		eventually(t, 30*time.Second, "/healthz to report the expired live set", func() bool {
			degraded, _ := health(t, s)
			return degraded
		})
	}

	fresh := e.startEdge(t, e.path("cache2"), []string{master.url}, "--poll", "300ms")
	eventually(t, 30*time.Second, "the fresh edge to refuse the expired manifest", func() bool {
		return metric(t, fresh, "pkgcdn_edge_verify_failures_total") > 0
	})
	for _, ent := range m.Entries[:5] {
		r := do(http.MethodGet, fileURL(fresh.url, testSet, ent.Path), nil)
		if r.err == nil && r.status == http.StatusOK {
			t.Errorf("a fresh edge served %s of an expired set", ent.Path)
		}
		if r.err == nil && !gatewayStatus(r.status) {
			t.Errorf("fresh edge, expired set, GET %s: status %d, want 502/503/504 (pkg tries another mirror)", ent.Path, r.status)
		}
	}
}

// TestSetIDsFromAClockAhead commits, through the publish API, a set whose
// ID comes from a build host whose clock runs an hour ahead, then publishes
// normally from a host with the right time. What must hold: the second set
// still gets a newer ID (set IDs only ever increase, whatever the clocks),
// the master and an edge switch to both in turn, and the edge serves the
// last one byte-correct — no edge is left refusing honest sets as rollbacks.
func TestSetIDsFromAClockAhead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 25, 20, 2*sampleset.MiB)
	master := e.startMaster(t, root)
	first := e.publishRemote(t, master.url, src)
	edge := e.startEdge(t, e.path("cache"), []string{master.url})
	e.waitSet(t, edge.url, first)

	live := e.live(t, master.url)
	ahead := *live
	now := time.Now()
	ahead.ID, ahead.Previous = setid.FromTime(now.Add(time.Hour)), live.ID
	ahead.Created, ahead.Expires = now.Add(time.Hour), now.Add(48*time.Hour)
	signer, err := sign.LoadSigner(e.key)
	if err != nil {
		t.Fatal(err)
	}
	r := do(http.MethodPost, master.url+"/.pkgcdn/publish/commit", bytes.NewReader(commitBody(t, e, master.url, &ahead, signer)),
		"Authorization", "Bearer "+e.token, "Content-Type", "application/json")
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("commit of a set from a clock an hour ahead: status %d (%s), err %v", r.status, r.body, r.err)
	}
	e.waitSet(t, edge.url, ahead.ID)

	bump(t, src, 26)
	id := e.publishRemote(t, master.url, src)
	if !id.After(ahead.ID) {
		t.Fatalf("a publish after a set from the future got ID %s, not after %s", id, ahead.ID)
	}
	e.waitSet(t, edge.url, id)
	fetchAll(t, edge.url, e.manifest(t, master.url, testSet, id))
}
