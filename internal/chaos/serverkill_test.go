package chaos

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// hugePath is a package large enough that a fill of it is caught mid-way.
const hugePath = "All/huge-1.0.pkg"

// addHuge writes a random file of size bytes at hugePath under src.
func addHuge(t testing.TB, src string, size int) {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	p := filepath.Join(src, filepath.FromSlash(hugePath))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// verifyRoot runs `pkgpublish verify --root`: every retained live set is
// whole on disk (nothing published was lost).
func (e *env) verifyRoot(t testing.TB, root string) {
	t.Helper()
	if out, err := runErr(t, bin("pkgpublish"), "verify", "--root", root, "--pubkey", e.pub); err != nil {
		t.Errorf("pkgpublish verify --root: %v\n%s", err, out)
	}
}

// fetchAll GETs every file of m through base and checks each byte.
func fetchAll(t testing.TB, base string, m *manifest.Manifest) {
	t.Helper()
	for _, ent := range m.Entries {
		r := do(http.MethodGet, fileURL(base, m.Set, ent.Path), nil)
		if r.err != nil || r.status != http.StatusOK {
			t.Errorf("GET %s from %s: status %d, err %v", ent.Path, base, r.status, r.err)
			continue
		}
		if got := digest.Sum(r.body); got != ent.SHA256 || int64(len(r.body)) != ent.Size {
			t.Errorf("GET %s from %s: %d bytes sha256 %s, want %d bytes %s", ent.Path, base, len(r.body), got, ent.Size, ent.SHA256)
		}
	}
}

// TestMasterKilledDuringUpload kills the master with SIGKILL while a remote
// publish uploads objects to it. What must hold: after a restart the master
// serves the old set whole and byte-correct, the publisher failed (it did
// not report a set that does not exist), a rerun finishes and its set is
// served byte-correct, and every retained set verifies on disk.
func TestMasterKilledDuringUpload(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 5, 40, 4*sampleset.MiB)
	master := e.startMaster(t, root)
	old := e.publishRemote(t, master.url, src)
	e.waitSet(t, master.url, old)

	if _, _, err := sampleset.Mutate(src, 0.5, 7); err != nil {
		t.Fatal(err)
	}
	want := newObjects(t, root, src)
	// Each write(2) of the publisher is delayed by strace, so that the
	// upload lasts long enough to be caught mid-way (a batch of small
	// objects would otherwise land in a few milliseconds). Stopping strace
	// below holds the publisher at its next write.
	pub := start(t, needStrace(t), append([]string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=write",
		"-e", "inject=write:delay_enter=5000", "--", bin("pkgpublish")},
		e.publishArgs(master.url, src, "--jobs", "1", "--retries", "0")...)...)
	for !pub.Exited() && countPresent(want) < 1 {
		time.Sleep(time.Millisecond) // polling another process's disk
	}
	// Freeze the publisher (its tracer) so that the master dies mid-upload,
	// then let it run into the dead master.
	if err := pub.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if n := countPresent(want); n == len(want) {
		t.Fatalf("all %d objects were uploaded before the publisher could be stopped", n)
	}
	master.p.Kill()
	if err := pub.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if code := pub.Wait(); code == 0 {
		t.Fatalf("publish succeeded although its master was killed mid-upload")
	}
	master.restart(t)
	if got, _ := e.checkServed(t, master.url); got != old {
		t.Errorf("after the master's restart it serves %s, want the old %s", got, old)
	}
	id := e.publishRemote(t, master.url, src)
	e.waitSet(t, master.url, id)
	if got, _ := e.checkServed(t, master.url); got != id {
		t.Errorf("after the rerun the master serves %s, want %s", got, id)
	}
	e.gcClean(t, root)
	if got, _ := e.checkServed(t, master.url); got != id {
		t.Errorf("after gc the master serves %s, want %s", got, id)
	}
}

// TestMasterKilledDuringServing kills the master with SIGKILL while 16
// clients download from it. What must hold: every response a client read
// to the end is byte-correct (an interrupted one is a broken connection,
// never a short 200); after a restart every file is served byte-correct and
// every retained set verifies on disk.
func TestMasterKilledDuringServing(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 6, 40, 4*sampleset.MiB)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex // guards complete
	complete := 0
	for c := range 16 {
		wg.Go(func() {
			for i := c; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ent := p.m.Entries[i%len(p.m.Entries)]
				r := do(http.MethodGet, fileURL(p.master.url, testSet, ent.Path), nil)
				if r.err == nil && r.status == http.StatusOK {
					if got := digest.Sum(r.body); got != ent.SHA256 {
						t.Errorf("GET %s: a complete 200 with sha256 %s, want %s", ent.Path, got, ent.SHA256)
					}
					mu.Lock()
					complete++
					mu.Unlock()
				}
			}
		})
	}
	eventually(t, time.Minute, "clients downloading", func() bool { mu.Lock(); defer mu.Unlock(); return complete >= 50 })
	p.master.p.Kill()
	p.master.restart(t)
	close(stop)
	wg.Wait()
	fetchAll(t, p.master.url, p.m)
	p.e.verifyRoot(t, p.root)
}

// TestEdgeKilledMidFill kills an edge with SIGKILL while it fills a large
// object from a gated upstream (half the bytes sent, the rest held back).
// What must hold: the client of the fill sees a broken connection, never a
// short 200; after a restart on the same cache directory the edge serves
// that object and every other byte-correct, from a new fill.
func TestEdgeKilledMidFill(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 8, 20, 2*sampleset.MiB)
	addHuge(t, src, 24<<20)
	id := e.publishLocal(t, root, src)
	master := e.startMaster(t, root)
	e.waitSet(t, master.url, id)
	m := e.live(t, master.url)
	huge, _ := m.Lookup(hugePath)
	up := newFaulty(t, master.url, root)
	up.set(huge.SHA256.String(), faultGate, 0)
	edge := e.startEdge(t, e.path("cache"), []string{up.url}, "--prefetch", "-1")
	e.waitSet(t, edge.url, id)

	resp, err := client.Get(fileURL(edge.url, testSet, hugePath))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case <-up.gated:
	case <-time.After(time.Minute): // a bound on a hang, not a synchronisation
		t.Fatal("the edge never fetched the object from its upstream")
	}
	// The client got bytes while the fill is still running (read-while-write).
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatalf("first MiB of a streaming fill: %v", err)
	}
	edge.p.Kill()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil {
		t.Errorf("the client of a killed fill read %d more bytes and a clean end: a short 200", n)
	}
	up.set(huge.SHA256.String(), faultNone, 0)
	edge.restart(t)
	fetchAll(t, edge.url, m)
}

// TestEdgeKilledDuringEviction kills an edge with SIGKILL, three times,
// while clients pull a set three times larger than its --cache-size, so it
// is filling and evicting all the time. What must hold: every complete
// response before a kill is byte-correct, and after each restart on the
// same cache directory every file is served byte-correct.
func TestEdgeKilledDuringEviction(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 9, 60, 6*sampleset.MiB)
	up := newFaulty(t, p.master.url, p.root)
	edge := p.e.startEdge(t, p.e.path("cache"), []string{up.url}, "--cache-size", "2MiB", "--prefetch", "-1")
	p.e.waitSet(t, edge.url, p.m.ID)
	for round := range 3 {
		t.Run(fmt.Sprintf("kill %d", round), func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex // guards complete
			complete := 0
			for c := range 8 {
				wg.Go(func() {
					for i := c * 7; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						ent := p.m.Entries[i%len(p.m.Entries)]
						if r := do(http.MethodGet, fileURL(edge.url, testSet, ent.Path), nil); r.err == nil && r.status == http.StatusOK {
							if got := digest.Sum(r.body); got != ent.SHA256 {
								t.Errorf("GET %s: a complete 200 with sha256 %s, want %s", ent.Path, got, ent.SHA256)
							}
							mu.Lock()
							complete++
							mu.Unlock()
						}
					}
				})
			}
			eventually(t, time.Minute, "clients filling the cache", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return complete >= 40
			})
			edge.p.Kill()
			close(stop)
			wg.Wait()
			edge.restart(t)
			fetchAll(t, edge.url, p.m)
		})
	}
}
