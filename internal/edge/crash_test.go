package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// The child side of TestEdgeKilledMidFill: an edge in its own process,
// killed with SIGKILL by the parent. It does nothing in a normal run.
func TestEdgeChildProcess(t *testing.T) {
	dir := os.Getenv("PKGCDN_EDGE_CHILD_DIR")
	if dir == "" {
		return // not the child
	}
	v, err := sign.NewVerifier(os.Getenv("PKGCDN_EDGE_CHILD_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Config{Dir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{Upstreams: []string{os.Getenv("PKGCDN_EDGE_CHILD_UPSTREAM")}, Verifier: v, Cache: c,
		StateDir: filepath.Join(dir, "state"), NoLongPoll: true, Prefetch: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("LISTEN http://%s\n", ln.Addr())
	_ = http.Serve(ln, e) // until killed
}

// TestEdgeKilledMidFill kills -9 an edge in its own process while a big
// fill is half done and a small one is complete but not durable yet (no
// checkpoint: fills commit without a barrier). Restarted in the same boot
// (the page cache kept every byte), the small one is served from the cache
// again, with the upstream down, once its bytes were checked. Restarted as after a power loss (another
// boot ID), nothing that no checkpoint covered is served: 502 with the
// upstream down. The partial object is nowhere either way, and everything
// is fetched again correctly once the upstream is back.
func TestEdgeKilledMidFill(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		reboot bool
	}{{"same boot", false}, {"after a reboot", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			edgeKilledMidFill(t, tc.reboot)
		})
	}
}

func edgeKilledMidFill(t *testing.T, reboot bool) {
	s, v := testKeys(t)
	m, up := newFakeMaster(t, s)
	body := pattern(2<<20, 17)
	small := pattern(3000, 18)
	m.publish(testSet, map[string]string{"All/big.pkg": body, "All/small.pkg": small, "meta.conf": "m"})
	g := newGate()
	m.setObjectHandler(func(w http.ResponseWriter, r *http.Request, data []byte) {
		if len(data) == len(body) {
			g.serve(w, r, data)
			return
		}
		_, _ = w.Write(data)
	})
	t.Cleanup(func() { close(g.release) })
	pubDir := t.TempDir()
	pub := filepath.Join(pubDir, "key.pub")
	if err := os.WriteFile(pub, []byte("untrusted comment: test\n"+s.Public()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEdgeChildProcess$", "-test.v")
	cmd.Env = append(os.Environ(), "PKGCDN_EDGE_CHILD_DIR="+dir, "PKGCDN_EDGE_CHILD_KEY="+pub,
		"PKGCDN_EDGE_CHILD_UPSTREAM="+up.URL)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var base string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if u, ok := strings.CutPrefix(sc.Text(), "LISTEN "); ok {
			base = u
			break
		}
	}
	if base == "" {
		t.Fatal("child edge did not start")
	}
	go func() { // drain the child's output
		for sc.Scan() {
		}
	}()
	mustGet(t, base, "/"+testSet+"/meta.conf", http.StatusOK)
	if _, b := mustGet(t, base, "/"+testSet+"/All/small.pkg", http.StatusOK); string(b) != small {
		t.Fatal("small: wrong bytes")
	}
	// The small fill is committed once this answers from the cache.
	for ctx := waitCtx(t); ; {
		resp, _ := mustGet(t, base, "/"+testSet+"/All/small.pkg", http.StatusOK)
		if resp.Header.Get("Cache-Status") == csHit {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("small fill never committed")
		}
	}
	// Start the big fill, let half of it arrive, then kill -9 the edge.
	resp, err := http.Get(base + "/" + testSet + "/All/big.pkg")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.sentHalf:
	case <-waitCtx(t).Done():
		t.Fatal("upstream never sent")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	resp.Body.Close()

	// Restarted in this process, with the upstream down: the set is
	// served from the persisted state, the partial object is nowhere.
	m.setDown(http.StatusServiceUnavailable)
	e := openTestEdge(t, dir, v, []string{up.URL}, func(_ *Config, cc *cache.Config) {
		if reboot {
			cc.BootID = func() [16]byte { return [16]byte{0xb0, 0x07} }
		}
	})
	if e.liveID(testSet).IsZero() {
		t.Fatal("restarted edge lost its set")
	}
	if _, err := e.cache.Get(cache.Key(digest.Sum([]byte(body)))); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("partial object after kill -9: Get = %v, want ErrNotFound", err)
	}
	mustGet(t, e.srv.URL, "/"+testSet+"/All/big.pkg", http.StatusBadGateway)
	if reboot {
		mustGet(t, e.srv.URL, "/"+testSet+"/All/small.pkg", http.StatusBadGateway)
	} else {
		// Served again once the reconcile checked its bytes.
		waitCached(t, e.cache, cache.Key(digest.Sum([]byte(small))))
		if _, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/small.pkg", http.StatusOK); string(b) != small {
			t.Fatal("small after restart in the same boot: wrong bytes")
		}
	}
	m.setDown(0)
	m.setObjectHandler(nil)
	_, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/big.pkg", http.StatusOK)
	if string(b) != body {
		t.Fatal("after restart: wrong bytes")
	}
	if _, b := mustGet(t, e.srv.URL, "/"+testSet+"/All/small.pkg", http.StatusOK); string(b) != small {
		t.Fatal("small after restart: wrong bytes")
	}
}
