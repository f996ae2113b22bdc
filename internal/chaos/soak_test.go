package chaos

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// envDuration reads a duration from the environment, or def.
func envDuration(t testing.TB, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive Go duration such as 10m", name, s)
	}
	return d
}

// soakStats are the figures of a soak, safe for concurrent use.
type soakStats struct {
	requests, bytes, retried atomic.Int64
	mu                       sync.Mutex // guards lat, failures, retries
	lat                      []time.Duration
	failures                 []string
	retries                  map[string]int64 // why requests were retryable
}

func (s *soakStats) retry(why string) {
	s.retried.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.retries == nil {
		s.retries = map[string]int64{}
	}
	s.retries[why]++
}

func (s *soakStats) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failures) < 50 {
		s.failures = append(s.failures, fmt.Sprintf(format, args...))
	} else if len(s.failures) == 50 {
		s.failures = append(s.failures, "…")
	}
}

// manifests is every set the soak published, fetched (verified) from the
// master on first use. Safe for concurrent use.
type manifests struct {
	t      testing.TB
	e      *env
	master string
	mu     sync.Mutex // guards byID
	byID   map[setid.ID]*manifest.Manifest
}

func (ms *manifests) get(id setid.ID) *manifest.Manifest {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if m, ok := ms.byID[id]; ok {
		return m
	}
	m := ms.e.manifest(ms.t, ms.master, testSet, id)
	ms.byID[id] = m
	return m
}

// TestSoak runs a master and two edges (edge2's upstream is edge1) under 200
// concurrent clients for PKGCDN_SOAK_DURATION (default 60s; scripts/soak.sh
// sets 10m). Each client behaves as pkg: it reads the catalogue (meta.conf,
// packagesite.pkg), then fetches packages of that set, one in five as a
// `Range: bytes=N-` resume of an interrupted download. A new set is
// published over HTTP every PKGCDN_SOAK_PUBLISH_EVERY (default 5s; 30s in
// scripts/soak.sh) and edge1 is restarted (SIGTERM, then started again)
// half-way. What must hold: zero failed requests that pkg would not retry
// (a 5xx or a refused connection is retried on another mirror; a 404 for a
// path of the client's set, a short body or wrong bytes are failures), zero
// responses mixing two sets (every body's sha256 is the manifest entry of
// the set the response names, and a resumed download assembles into the
// file of the client's set), and bounded memory (VmHWM < 256 MiB) and file
// descriptors (< 4096) in every server. The figures (requests, bytes, p99
// latency, RSS) are printed at the end.
func TestSoak(t *testing.T) {
	duration := envDuration(t, "PKGCDN_SOAK_DURATION", 60*time.Second)
	every := envDuration(t, "PKGCDN_SOAK_PUBLISH_EVERY", 5*time.Second)
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 23, 120, 24*sampleset.MiB)
	master := e.startMaster(t, root)
	first := e.publishRemote(t, master.url, src)
	edge1 := e.startEdge(t, e.path("cache1"), []string{master.url}, "--cache-size", "64MiB")
	edge2 := e.startEdge(t, e.path("cache2"), []string{edge1.url}, "--cache-size", "16MiB")
	e.waitSet(t, edge2.url, first)
	ms := &manifests{t: t, e: e, master: master.url, byID: map[setid.ID]*manifest.Manifest{}}

	var st soakStats
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{
		DisableCompression: true, MaxIdleConnsPerHost: 256,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		ResponseHeaderTimeout: 30 * time.Second, // pkg's FETCH_TIMEOUT
	}}
	mirrors := []string{edge1.url, edge2.url, edge2.url}
	for c := range 200 {
		wg.Go(func() { soakClient(hc, mirrors[c%len(mirrors)], uint64(c), ms, &st, stop) })
	}

	published := []setid.ID{first}
	var pubErr error
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(every): // the publish cadence under test
			}
			if _, _, err := sampleset.BumpVersions(src, 5, uint64(1000+i)); err != nil {
				pubErr = err
				return
			}
			out, err := runErr(t, bin("pkgpublish"), e.publishArgs(master.url, src)...)
			if err != nil {
				pubErr = fmt.Errorf("publish %d: %v\n%s", i, err, out)
				return
			}
			id, err := setid.Parse(strings.TrimSpace(out))
			if err != nil {
				pubErr = fmt.Errorf("publish %d printed %q", i, out)
				return
			}
			published = append(published, id)
		}
	})

	time.Sleep(duration / 2) // the run's own length, not a synchronisation
	edge1.p.Stop()
	edge1.restart(t)
	time.Sleep(duration - duration/2)
	close(stop)
	wg.Wait()
	if pubErr != nil {
		t.Errorf("publisher: %v", pubErr)
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	slices.Sort(st.lat)
	p99 := time.Duration(0)
	if len(st.lat) > 0 {
		p99 = st.lat[len(st.lat)*99/100]
	}
	fmt.Printf("soak: %v, %d sets published, %d requests (%d retryable 5xx/refused), %d MiB, p99 %v\n",
		duration, len(published), st.requests.Load(), st.retried.Load(), st.bytes.Load()>>20, p99)
	names := strings.NewReplacer(edge1.url, "edge1", edge2.url, "edge2")
	for why, n := range st.retries {
		fmt.Printf("soak: retryable: %s × %d\n", names.Replace(why), n)
	}
	for _, s := range []struct {
		name string
		s    *server
	}{{"master", master}, {"edge1", edge1}, {"edge2", edge2}} {
		cur, peak := rss(t, s.s.p.Pid())
		n := fds(t, s.s.p.Pid())
		fmt.Printf("soak: %s RSS %d MiB, peak %d MiB, %d fds\n", s.name, cur>>20, peak>>20, n)
		if peak > 256<<20 {
			t.Errorf("%s: VmHWM %d MiB, want < 256 MiB", s.name, peak>>20)
		}
		if n > 4096 {
			t.Errorf("%s: %d open file descriptors, want < 4096", s.name, n)
		}
	}
	if len(st.failures) > 0 {
		t.Errorf("%d failed requests pkg would not retry:\n%s", len(st.failures), strings.Join(st.failures, "\n"))
	}
	if st.requests.Load() < 1000 {
		t.Errorf("only %d requests in %v: the soak did not load the servers", st.requests.Load(), duration)
	}
	if len(published) < 2 {
		t.Errorf("only %d sets published in %v", len(published), duration)
	}
}

// connError names a connection error's kind.
func connError(err error) string {
	switch {
	case strings.Contains(err.Error(), "refused"):
		return "connection refused"
	case strings.Contains(err.Error(), "reset"):
		return "connection reset"
	case strings.Contains(err.Error(), "EOF"):
		return "connection closed"
	case strings.Contains(err.Error(), "timeout"):
		return "timeout"
	}
	return "connection error"
}

// soakClient is one pkg-like client of a mirror until stop is closed.
func soakClient(hc *http.Client, mirror string, seed uint64, ms *manifests, st *soakStats, stop chan struct{}) {
	r := rand.New(rand.NewPCG(seed, 42))
	for {
		select {
		case <-stop:
			return
		default:
		}
		// pkg update: the catalogue names the client's set.
		var set setid.ID
		ok := true
		for _, rel := range []string{sampleset.MetaConf, sampleset.PackagesitePkg} {
			id, good := soakGet(hc, mirror, rel, ms, st, setid.ID{}, "", 0, nil)
			if !good {
				ok = false
				break
			}
			set = id
		}
		if !ok {
			continue
		}
		m := ms.get(set)
		var pkgs []manifest.Entry
		for _, ent := range m.Entries {
			if strings.HasPrefix(ent.Path, "All/") {
				pkgs = append(pkgs, ent)
			}
		}
		for range 3 {
			ent := pkgs[r.IntN(len(pkgs))]
			if r.IntN(5) == 0 && ent.Size > 2 {
				// An interrupted download, resumed with Range: bytes=N-.
				n := 1 + r.Int64N(ent.Size-1)
				head := make([]byte, 0, n)
				if _, good := soakGet(hc, mirror, ent.Path, ms, st, set, "", n, &head); good {
					soakGet(hc, mirror, ent.Path, ms, st, set, fmt.Sprintf("bytes=%d-", len(head)), 0, &head)
				}
				continue
			}
			soakGet(hc, mirror, ent.Path, ms, st, set, "", 0, nil)
		}
	}
}

// soakGet fetches one path like pkg and checks it. client is the set of
// the client's catalogue (zero while reading the catalogue); rg a Range
// header; limit > 0 stops after limit bytes (an interrupted download) and
// keeps them in *acc; with rg set, the body is appended to *acc and the
// whole must be the file of the client's set. It returns the set the
// response came from and whether it was a good answer.
func soakGet(hc *http.Client, mirror, rel string, ms *manifests, st *soakStats, client setid.ID, rg string, limit int64, acc *[]byte) (setid.ID, bool) {
	req, _ := http.NewRequest(http.MethodGet, fileURL(mirror, testSet, rel), nil)
	if rg != "" {
		req.Header.Set("Range", rg)
	}
	t0 := time.Now()
	st.requests.Add(1)
	resp, err := hc.Do(req)
	if err != nil {
		st.retry(mirror + " " + connError(err)) // refused or reset before an answer: pkg tries again
		return setid.ID{}, false
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 500:
		st.retry(fmt.Sprintf("%s %d", mirror, resp.StatusCode))
		_, _ = io.Copy(io.Discard, resp.Body)
		return setid.ID{}, false
	case resp.StatusCode == http.StatusNotFound:
		st.fail("GET %s from %s: 404 for a path of set %s", rel, mirror, client)
		return setid.ID{}, false
	case resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent:
		st.fail("GET %s (Range %q) from %s: status %d", rel, rg, mirror, resp.StatusCode)
		return setid.ID{}, false
	}
	from, err := setid.Parse(resp.Header.Get("X-Pkgcdn-Set-Id"))
	if err != nil {
		st.fail("GET %s from %s: no set ID in the answer", rel, mirror)
		return setid.ID{}, false
	}
	var body []byte
	if limit > 0 {
		body, err = io.ReadAll(io.LimitReader(resp.Body, limit))
	} else {
		body, err = io.ReadAll(resp.Body)
	}
	st.bytes.Add(int64(len(body)))
	if err != nil {
		st.fail("GET %s from %s: short body after %d bytes: %v", rel, mirror, len(body), err)
		return setid.ID{}, false
	}
	st.mu.Lock()
	st.lat = append(st.lat, time.Since(t0))
	st.mu.Unlock()
	want, ok := ms.get(from).Lookup(rel)
	if !ok {
		st.fail("GET %s from %s: answered from set %s, which has no such path", rel, mirror, from)
		return setid.ID{}, false
	}
	switch {
	case limit > 0:
		*acc = append(*acc, body...)
	case rg != "":
		whole := append(*acc, body...)
		if resp.StatusCode == http.StatusOK {
			whole = body // the server ignored the range: a whole file
		}
		mine, _ := ms.get(client).Lookup(rel)
		if digest.Sum(whole) != mine.SHA256 {
			st.fail("GET %s from %s: resumed download (Range %s, answer from set %s) is not the file of set %s", rel, mirror, rg, from, client)
			return from, false
		}
	default:
		if got := digest.Sum(body); got != want.SHA256 || int64(len(body)) != want.Size {
			st.fail("GET %s from %s: %d bytes sha256 %s, not set %s's %d bytes %s", rel, mirror, len(body), got, from, want.Size, want.SHA256)
			return from, false
		}
	}
	return from, true
}
