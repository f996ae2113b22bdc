package publish

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

func TestBatches(t *testing.T) {
	small := func(size int64) Object { return Object{Size: size} }
	many := make([]Object, BatchObjects+1)
	for i := range many {
		many[i] = small(1)
	}
	full := make([]Object, BatchBytes/BatchObjectBytes+1)
	for i := range full {
		full[i] = small(BatchObjectBytes)
	}
	tests := []struct {
		name string
		objs []Object
		want []int // objects per unit
	}{
		{"none", nil, nil},
		{"one small", []Object{small(1)}, []int{1}},
		{"large ones alone", []Object{small(1), small(BatchObjectBytes + 1), small(2)}, []int{1, 2}},
		{"at the threshold is small", []Object{small(BatchObjectBytes), small(0)}, []int{2}},
		{"bytes limit", full, []int{len(full) - 1, 1}},
		{"objects limit", many, []int{BatchObjects, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []int
			for _, u := range batches(tt.objs) {
				got = append(got, len(u))
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("batches = units of %v, want %v", got, tt.want)
			}
		})
	}
}

// countingOrigin runs the real master handler over a new root behind a
// middleware that counts publish calls by operation; fault, if not nil,
// may answer a call itself (it returns true then).
type countingOrigin struct {
	root  *layout.Root
	ts    *httptest.Server
	mu    sync.Mutex // guards calls and fault
	calls map[string]int
	fault func(op string, n int, w http.ResponseWriter, r *http.Request, next http.Handler) bool
}

func newCountingOrigin(t testing.TB, pub, token string) *countingOrigin {
	t.Helper()
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	co := &countingOrigin{root: newRoot(t), calls: map[string]int{}}
	srv, err := origin.New(origin.Config{Root: co.root, Verifier: v, PublishToken: token, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	co.ts = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, ok := strings.CutPrefix(r.URL.Path, "/.pkgcdn/publish/")
		if ok {
			if strings.HasPrefix(op, "objects/") {
				op = "objects"
			}
			co.mu.Lock()
			co.calls[op]++
			n, fault := co.calls[op], co.fault
			co.mu.Unlock()
			if fault != nil && fault(op, n, w, r, srv) {
				return
			}
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(co.ts.Close)
	return co
}

func (co *countingOrigin) count(op string) int {
	co.mu.Lock()
	defer co.mu.Unlock()
	return co.calls[op]
}

// smallTree writes n distinct small files and one large one; it returns
// the number of distinct objects.
func smallTree(t testing.TB, src string, n int) int {
	files := map[string]string{"All/large.pkg": strings.Repeat("L", BatchObjectBytes+1), "All/dup.pkg": "file 0 " + strings.Repeat("x", 0)}
	for i := range n {
		files[fmt.Sprintf("All/f%04d.pkg", i)] = fmt.Sprintf("file %d ", i) + strings.Repeat("x", i%700)
	}
	writeTree(t, src, files)
	return n + 1
}

func TestPublishRemoteSendsBatchesToOrigin(t *testing.T) {
	cfg, pub := remoteConfig(t)
	co := newCountingOrigin(t, pub, "tok")
	c := newClient(t, co.ts.URL, "tok")
	src := t.TempDir()
	objects := smallTree(t, src, 400)
	r1, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.New || r1.Sent != objects {
		t.Errorf("first publish = %+v, want %d objects sent", r1, objects)
	}
	checkConsistent(t, co.root, testSet, pub)
	if got := co.count("objects"); got != 1 {
		t.Errorf("%d single PUTs, want 1 (the one large object)", got)
	}
	// 400 small objects (under 8 MiB), asked about in one missing query.
	if b := co.count("batch"); b != 1 {
		t.Errorf("%d batch uploads for %d small objects, want 1", b, objects-1)
	}
	reqs := co.count("batch") + co.count("objects") + co.count("missing") + co.count("commit")
	if reqs*20 > objects {
		t.Errorf("%d publish requests for %d objects, want far fewer", reqs, objects)
	}

	// A changed file and a new one: a batch of 2.
	writeTree(t, src, map[string]string{"All/f0001.pkg": "changed", "All/new.pkg": "new"})
	before := co.count("batch")
	r2, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil || !r2.New || r2.Sent != 2 || co.count("batch") != before+1 {
		t.Fatalf("republish = %+v, %v with %d batches; want 2 objects in one batch", r2, err, co.count("batch")-before)
	}
	checkConsistent(t, co.root, testSet, pub)
}

// TestPublishRemoteRetriesBatch loses the answer to the first batch (the
// master stored it): the retry sends the batch again, and the master skips
// what it holds.
func TestPublishRemoteRetriesBatch(t *testing.T) {
	cfg, pub := remoteConfig(t)
	co := newCountingOrigin(t, pub, "tok")
	co.fault = func(op string, n int, w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if op != "batch" || n > 1 {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("first batch = %d %s, want 200", rec.Code, rec.Body)
		}
		http.Error(w, "lost answer", http.StatusBadGateway)
		return true
	}
	c := newClient(t, co.ts.URL, "tok")
	src := t.TempDir()
	objects := smallTree(t, src, 50)
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != objects || co.count("batch") != 2 {
		t.Errorf("publish = %+v with %d batch calls, want %d objects sent, in 2 calls", r, co.count("batch"), objects)
	}
	checkConsistent(t, co.root, testSet, pub)
}

// TestPublishRemoteSendsBytesHashed changes a small file between hashing
// and sending: its bytes were kept from the hash (retainer), so what the
// master gets and the manifest names are the bytes hashed, each small file
// is opened once, and the set is consistent.
func TestPublishRemoteSendsBytesHashed(t *testing.T) {
	cfg, pub := remoteConfig(t)
	co := newCountingOrigin(t, pub, "tok")
	c := newClient(t, co.ts.URL, "tok")
	src := t.TempDir()
	smallTree(t, src, 20)
	var mu sync.Mutex
	opens := map[string]int{}
	cfg.open = func(name string) (io.ReadCloser, error) {
		mu.Lock()
		opens[filepath.Base(name)]++
		mu.Unlock()
		if filepath.Base(name) == "f0010.pkg" && co.count("missing") > 1 { // the first is CheckAuth's
			return io.NopCloser(strings.NewReader("FILE 10 xxxxxxxxxx")), nil
		}
		return os.Open(name)
	}
	if _, err := PublishRemote(t.Context(), cfg, c, src); err != nil {
		t.Fatal(err)
	}
	m := checkConsistent(t, co.root, testSet, pub)
	if e, ok := m.Lookup("All/f0010.pkg"); !ok || e.SHA256 != digest.Sum([]byte("file 10 xxxxxxxxxx")) {
		t.Errorf("manifest entry of f0010.pkg = %+v, want the bytes hashed", e)
	}
	for name, n := range opens {
		want := 1
		if name == "large.pkg" {
			want = 2 // hashed, then read again to be sent: too large to keep
		}
		if n != want {
			t.Errorf("%s opened %d times, want %d", name, n, want)
		}
	}
}

// TestPublishRemoteLargeSourceChanging changes a file too large to keep
// between hashing and sending: the publish fails naming it, the master
// keeps nothing of it, and no set goes live.
func TestPublishRemoteLargeSourceChanging(t *testing.T) {
	cfg, pub := remoteConfig(t)
	co := newCountingOrigin(t, pub, "tok")
	c := newClient(t, co.ts.URL, "tok")
	src := t.TempDir()
	smallTree(t, src, 20)
	changed := strings.Repeat("l", BatchObjectBytes+1) // same size, other bytes
	cfg.open = func(name string) (io.ReadCloser, error) {
		if filepath.Base(name) == "large.pkg" && co.count("missing") > 1 { // the first is CheckAuth's
			return io.NopCloser(strings.NewReader(changed)), nil
		}
		return os.Open(name)
	}
	_, err := PublishRemote(t.Context(), cfg, c, src)
	var ce *ChangedError
	if !errors.As(err, &ce) || ce.Path != "All/large.pkg" {
		t.Fatalf("PublishRemote = %v, want a *ChangedError naming All/large.pkg", err)
	}
	if ok, _ := co.root.HasObject(digest.Sum([]byte(changed))); ok {
		t.Error("the master kept an object whose bytes were not its hash")
	}
	if _, err := co.root.Live(testSet); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("a set went live: %v", err)
	}
}

// TestPublishRemoteFallsBackToPUT publishes to a master without batch
// uploads (it answers 404): every object goes by PUT, and the client stops
// trying batches.
func TestPublishRemoteFallsBackToPUT(t *testing.T) {
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	src := t.TempDir()
	objects := smallTree(t, src, 30)
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	tried := fm.batchQs
	if r.Sent != objects || fm.putCount() != objects || tried < 1 || tried > cfg.Jobs {
		t.Errorf("publish = %+v with %d PUTs after %d batch tries, want %d PUTs after 1 to %d tries",
			r, fm.putCount(), tried, objects, cfg.Jobs)
	}
	checkConsistent(t, fm.root, testSet, pub)
	writeTree(t, src, map[string]string{"All/n1.pkg": "n1", "All/n2.pkg": "n2"})
	if r, err := PublishRemote(t.Context(), cfg, c, src); err != nil || r.Sent != 2 || fm.batchQs != tried {
		t.Errorf("second publish = %+v, %v after %d more batch tries; want 2 objects by PUT, no batch tried", r, err, fm.batchQs-tried)
	}
}
