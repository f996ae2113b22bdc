package publish

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
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
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// fakeMaster implements the upload API of PUBLISH_API.md over a layout
// root, with hooks to inject faults. It is the client's counterpart in these
// tests; internal/origin is the production one.
type fakeMaster struct {
	t     testing.TB
	root  *layout.Root
	token string
	v     *sign.Verifier
	now   func() time.Time

	mu        sync.Mutex // guards the fields below
	puts      map[digest.SHA256]int
	putFail   func(d digest.SHA256, n int) int // status to answer instead (0: serve)
	commits   int
	onCommit  func(n int) // called before each commit is handled
	missingQs int
	asked     int // digests asked about in all missing queries
	batchQs   int // batch uploads tried (answered 404: an older master)
}

func newFakeMaster(t testing.TB, pub string) (*fakeMaster, *httptest.Server) {
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	fm := &fakeMaster{t: t, root: newRoot(t), token: "s3cret", v: v, now: time.Now, puts: map[digest.SHA256]int{}}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	return fm, srv
}

func (fm *fakeMaster) putCount() int {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	n := 0
	for _, c := range fm.puts {
		n += c
	}
	return n
}

func apiError(w http.ResponseWriter, status int, code, msg string, missing []digest.SHA256) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"error": msg, "code": code}
	if missing != nil {
		var ms []string
		for _, d := range missing {
			ms = append(ms, d.String())
		}
		body["missing"] = ms
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (fm *fakeMaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/.pkgcdn/sets" || p == "/.pkgcdn/sets.minisig":
		data, sig, err := fm.root.Sets()
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if strings.HasSuffix(p, ".minisig") {
			data = sig
		}
		_, _ = w.Write(data)
		return
	case strings.HasPrefix(p, "/.pkgcdn/manifest/"):
		rest := strings.TrimPrefix(p, "/.pkgcdn/manifest/")
		rest, isSig := strings.CutSuffix(rest, ".minisig")
		i := strings.LastIndexByte(rest, '/')
		id, err := setid.Parse(rest[i+1:])
		if i < 0 || err != nil {
			http.NotFound(w, r)
			return
		}
		data, sig, err := fm.root.Manifest(rest[:i], id)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		if isSig {
			data = sig
		}
		_, _ = w.Write(data)
		return
	case !strings.HasPrefix(p, "/.pkgcdn/publish/"):
		http.NotFound(w, r)
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(tok), []byte(fm.token)) != 1 {
		apiError(w, 401, "unauthorized", "bad token", nil)
		return
	}
	op := strings.TrimPrefix(p, "/.pkgcdn/publish/")
	switch {
	case op == "missing" && r.Method == http.MethodPost:
		fm.mu.Lock()
		fm.missingQs++
		fm.mu.Unlock()
		sc := bufio.NewScanner(io.LimitReader(r.Body, 1<<20))
		var out strings.Builder
		n := 0
		for sc.Scan() {
			n++
			d, err := digest.Parse(sc.Text())
			if err != nil || n > MaxMissingBatch {
				apiError(w, 400, "bad_request", "bad line", nil)
				return
			}
			fm.mu.Lock()
			fm.asked++
			fm.mu.Unlock()
			if ok, _ := fm.root.HasObject(d); !ok {
				out.WriteString(d.String() + "\n")
			}
		}
		_, _ = io.WriteString(w, out.String())
	case strings.HasPrefix(op, "objects/") && r.Method == http.MethodPut:
		d, err := digest.Parse(strings.TrimPrefix(op, "objects/"))
		if err != nil {
			apiError(w, 400, "bad_request", "bad digest", nil)
			return
		}
		if r.ContentLength < 0 {
			apiError(w, 411, "length_required", "no Content-Length", nil)
			return
		}
		fm.mu.Lock()
		fm.puts[d]++
		n := fm.puts[d]
		fail := fm.putFail
		fm.mu.Unlock()
		if fail != nil {
			if st := fail(d, n); st != 0 {
				apiError(w, st, "injected", "injected fault", nil)
				return
			}
		}
		err = fm.root.PutObject(d, r.ContentLength, r.Body)
		var me *digest.MismatchError
		var se *digest.SizeError
		switch {
		case errors.As(err, &me):
			apiError(w, 400, "digest_mismatch", err.Error(), nil)
		case errors.As(err, &se):
			apiError(w, 400, "size_mismatch", err.Error(), nil)
		case err != nil:
			apiError(w, 400, "bad_body", err.Error(), nil)
		default:
			w.WriteHeader(http.StatusCreated)
		}
	case op == "batch":
		fm.mu.Lock()
		fm.batchQs++
		fm.mu.Unlock()
		http.NotFound(w, r)
	case (op == "commit" || op == "refresh") && r.Method == http.MethodPost:
		var hook func(int)
		var n int
		if op == "commit" {
			fm.mu.Lock()
			fm.commits++
			n = fm.commits
			hook = fm.onCommit
			fm.mu.Unlock()
		}
		if hook != nil {
			hook(n)
		}
		var cr CommitRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 256<<20)).Decode(&cr); err != nil {
			apiError(w, 400, "bad_request", err.Error(), nil)
			return
		}
		unlock, err := fm.root.Lock(r.Context())
		if err != nil {
			apiError(w, 503, "locked", err.Error(), nil)
			return
		}
		defer unlock()
		c := layout.Commit{ManifestData: cr.Manifest, ManifestSig: cr.ManifestSig, SetsData: cr.Sets, SetsSig: cr.SetsSig}
		if op == "refresh" {
			err = fm.root.Refresh(r.Context(), c, fm.v, fm.now())
		} else {
			err = fm.root.Commit(r.Context(), c, fm.v, fm.now())
		}
		var mo *layout.MissingObjectsError
		switch {
		case err == nil:
			m, _ := manifest.Decode(cr.Manifest)
			_ = json.NewEncoder(w).Encode(map[string]string{"set": m.Set, "id": m.ID.String()})
		case errors.Is(err, sign.ErrUnknownKey):
			apiError(w, 403, "untrusted_key", err.Error(), nil)
		case errors.Is(err, manifest.ErrExpired):
			apiError(w, 422, "expired", err.Error(), nil)
		case errors.Is(err, setid.ErrRollback):
			apiError(w, 409, "rollback", err.Error(), nil)
		case errors.Is(err, layout.ErrConflict):
			apiError(w, 409, "conflict", err.Error(), nil)
		case errors.Is(err, layout.ErrSetsChanged):
			apiError(w, 409, "sets_changed", err.Error(), nil)
		case errors.Is(err, layout.ErrNotRefresh):
			apiError(w, 422, "not_refresh", err.Error(), nil)
		case errors.Is(err, layout.ErrNotFound):
			apiError(w, 404, "not_found", err.Error(), nil)
		case errors.As(err, &mo):
			apiError(w, 422, "missing_objects", err.Error(), mo.Missing)
		default:
			apiError(w, 500, "internal", err.Error(), nil)
		}
	default:
		http.NotFound(w, r)
	}
}

func newClient(t testing.TB, url, token string) *Client {
	c, err := NewClient(ClientConfig{URL: url, Token: token, RetryWait: time.Millisecond, Retries: 3})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// realClock is a Now func close to the wall clock (the fake master checks
// expiry against time.Now), strictly later at each call.
func realClock() func() time.Time {
	var mu sync.Mutex
	var last time.Time
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t := time.Now()
		if !t.After(last.Add(time.Second)) {
			t = last.Add(time.Second)
		}
		last = t
		return t
	}
}

func remoteConfig(t testing.TB) (Config, string) {
	s, pub := newKey(t)
	return Config{Set: testSet, Signer: s, Now: realClock(), Jobs: 3}, pub
}

func TestPublishRemote(t *testing.T) {
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL+"/", fm.token)
	src := t.TempDir()
	files := map[string]string{"All/a.pkg": "a", "All/b.pkg": "b", "All/same.pkg": "a", "meta.conf": "m", "empty": ""}
	writeTree(t, src, files)
	r1, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.New || r1.Sent != 4 || fm.putCount() != 4 {
		t.Errorf("first publish = %+v with %d PUTs, want a new set and 4 distinct objects sent", r1, fm.putCount())
	}
	m := checkConsistent(t, fm.root, testSet, pub)
	if m.ID != r1.ID || len(m.Entries) != len(files) {
		t.Errorf("master live %s with %d files, want %s with %d", m.ID, len(m.Entries), r1.ID, len(files))
	}

	asked := fm.asked
	r2, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if r2.New || r2.ID != r1.ID || fm.putCount() != 4 || fm.asked != asked {
		t.Errorf("unchanged republish = %+v, %d PUTs in all, %d digests asked; want no new set, nothing sent or asked",
			r2, fm.putCount(), fm.asked-asked)
	}

	writeTree(t, src, map[string]string{"All/b.pkg": "b2", "All/c.pkg": "c"})
	r3, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if !r3.New || r3.Sent != 2 || fm.putCount() != 6 || r3.Previous != r1.ID {
		t.Errorf("republish = %+v, %d PUTs in all; want 2 more", r3, fm.putCount())
	}
	if fm.asked != asked+2 {
		t.Errorf("republish asked about %d digests, want only the 2 changed files'", fm.asked-asked)
	}
	m = checkConsistent(t, fm.root, testSet, pub)
	if a, _ := m.Lookup("All/a.pkg"); a.Modified != r1.ID {
		t.Errorf("unchanged a.pkg modified %s, want %s", a.Modified, r1.ID)
	}
	if b, _ := m.Lookup("All/b.pkg"); b.Modified != r3.ID {
		t.Errorf("changed b.pkg modified %s, want %s", b.Modified, r3.ID)
	}
}

func TestPublishRemoteResumesSendingOnlyMissing(t *testing.T) {
	cfg, pub := remoteConfig(t)
	cfg.Jobs = 1
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	src := t.TempDir()
	files := map[string]string{}
	for i := range 10 {
		files[fmt.Sprintf("All/p%d.pkg", i)] = fmt.Sprintf("package %d", i)
	}
	writeTree(t, src, files)
	// The master breaks after 4 objects: the publish fails, nothing goes live.
	fm.putFail = func(d digest.SHA256, n int) int {
		if len(fm.puts) > 4 {
			return http.StatusServiceUnavailable
		}
		return 0
	}
	if _, err := PublishRemote(t.Context(), cfg, c, src); err == nil {
		t.Fatal("publish against a failing master succeeded")
	}
	if _, err := fm.root.Live(testSet); !errors.Is(err, layout.ErrNotFound) {
		t.Fatalf("a set went live: %v", err)
	}
	stored := 0
	for d := range fm.puts {
		if ok, _ := fm.root.HasObject(d); ok {
			stored++
		}
	}
	fm.mu.Lock()
	fm.putFail = nil
	fm.puts = map[digest.SHA256]int{}
	fm.mu.Unlock()
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 10-stored || fm.putCount() != 10-stored {
		t.Errorf("rerun sent %d objects (%d PUTs), want the %d still missing", r.Sent, fm.putCount(), 10-stored)
	}
	checkConsistent(t, fm.root, testSet, pub)
}

func TestPublishRemoteRetriesServerErrors(t *testing.T) {
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1", "b": "2"})
	// Every object's first two PUTs fail: 503, then 502.
	fm.putFail = func(d digest.SHA256, n int) int {
		return map[int]int{1: 503, 2: 502}[n]
	}
	if _, err := PublishRemote(t.Context(), cfg, c, src); err != nil {
		t.Fatal(err)
	}
	if got := fm.putCount(); got != 6 {
		t.Errorf("%d PUTs, want 6 (3 per object)", got)
	}
	// 507 (disk full) is not retried.
	writeTree(t, src, map[string]string{"c": "3"})
	fm.putFail = func(d digest.SHA256, n int) int { return 507 }
	_, err := PublishRemote(t.Context(), cfg, c, src)
	var re *RemoteError
	if !errors.As(err, &re) || re.Status != 507 {
		t.Fatalf("publish = %v, want a 507 RemoteError", err)
	}
}

func TestPublishRemoteRefusals(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, fm *fakeMaster, cfg *Config, c **Client, url string)
		want  error
	}{
		{"wrong token", func(t *testing.T, fm *fakeMaster, cfg *Config, c **Client, url string) {
			*c = newClient(t, url, "wrong")
		}, ErrUnauthorized},
		{"untrusted key", func(t *testing.T, fm *fakeMaster, cfg *Config, c **Client, url string) {
			cfg.Signer, _ = newKey(t)
		}, ErrUntrustedKey},
		{"expired manifest", func(t *testing.T, fm *fakeMaster, cfg *Config, c **Client, url string) {
			cfg.Now = func() time.Time { return time.Now().Add(-48 * time.Hour) }
			cfg.Valid = time.Hour
		}, manifest.ErrExpired},
		{"someone else published meanwhile", func(t *testing.T, fm *fakeMaster, cfg *Config, c **Client, url string) {
			other := *cfg
			other.Now = func() time.Time { return time.Now().Add(-time.Hour) }
			src := t.TempDir()
			writeTree(t, src, map[string]string{"other": "x"})
			fm.onCommit = func(n int) {
				if n == 1 {
					if _, err := PublishLocal(context.Background(), other, fm.root, src); err != nil {
						t.Error(err)
					}
				}
			}
		}, ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, pub := remoteConfig(t)
			fm, srv := newFakeMaster(t, pub)
			c := newClient(t, srv.URL, fm.token)
			tt.setup(t, fm, &cfg, &c, srv.URL)
			src := t.TempDir()
			writeTree(t, src, map[string]string{"a": "1"})
			_, err := PublishRemote(t.Context(), cfg, c, src)
			if !errors.Is(err, tt.want) {
				t.Fatalf("PublishRemote = %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}
}

func TestPublishRemoteRetriesWhenSETSChanged(t *testing.T) {
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	// Another set is published right before our first commit.
	other := cfg
	other.Set = "FreeBSD:15:amd64/latest"
	osrc := t.TempDir()
	writeTree(t, osrc, map[string]string{"x": "other"})
	fm.onCommit = func(n int) {
		if n == 1 {
			if _, err := PublishLocal(context.Background(), other, fm.root, osrc); err != nil {
				t.Error(err)
			}
		}
	}
	src := t.TempDir()
	writeTree(t, src, map[string]string{"a": "1"})
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if fm.commits != 2 {
		t.Errorf("%d commits, want 2 (one refused with sets_changed)", fm.commits)
	}
	data, _, _ := fm.root.Sets()
	if !strings.Contains(string(data), testSet+" "+r.ID.String()) || !strings.Contains(string(data), other.Set) {
		t.Errorf("SETS lacks one of the sets:\n%s", data)
	}
}

func TestPublishRemoteSourceChangingWhileSent(t *testing.T) {
	cfg, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	src := t.TempDir()
	// Too large to be kept from its hash to its upload: read again to be
	// sent, when it holds the same size, other bytes.
	hashed, sent := strings.Repeat("a", retainMax+1), strings.Repeat("A", retainMax+1)
	writeTree(t, src, map[string]string{"All/a.pkg": hashed, "All/b.pkg": "bbbb"})
	cfg.open = func(name string) (io.ReadCloser, error) {
		if filepath.Base(name) == "a.pkg" {
			fm.mu.Lock()
			sending := fm.missingQs > 1 // the first is CheckAuth's, before hashing
			fm.mu.Unlock()
			if sending {
				return io.NopCloser(strings.NewReader(sent)), nil
			}
		}
		return os.Open(name)
	}
	_, err := PublishRemote(t.Context(), cfg, c, src)
	var ce *ChangedError
	if !errors.As(err, &ce) || ce.Path != "All/a.pkg" {
		t.Fatalf("PublishRemote = %v, want a *ChangedError naming All/a.pkg", err)
	}
	if ok, _ := fm.root.HasObject(digest.Sum([]byte(hashed))); ok {
		t.Error("the master kept an object whose bytes were not its hash")
	}
	if _, err := fm.root.Live(testSet); !errors.Is(err, layout.ErrNotFound) {
		t.Errorf("a set went live: %v", err)
	}
}

func TestMissingBatches(t *testing.T) {
	_, pub := remoteConfig(t)
	fm, srv := newFakeMaster(t, pub)
	c := newClient(t, srv.URL, fm.token)
	ds := make([]digest.SHA256, 2*MaxMissingBatch+5)
	for i := range ds {
		ds[i] = digest.Sum(fmt.Appendf(nil, "%d", i))
	}
	if err := fm.root.PutObject(ds[7], 1, strings.NewReader("7")); err != nil {
		t.Fatal(err)
	}
	got, err := c.Missing(t.Context(), ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ds)-1 || got[7] != ds[8] || fm.missingQs != 3 {
		t.Errorf("Missing: %d digests in %d requests, want %d in 3", len(got), fm.missingQs, len(ds)-1)
	}
}

func TestPutObjectStalledMasterIsCutOff(t *testing.T) {
	// A master that reads a little of the body, then nothing more.
	// (The server notices a client gone only once the body is read, so the
	// handler is released by the test.)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.CopyN(io.Discard, r.Body, 1000)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	c, err := NewClient(ClientConfig{URL: srv.URL, Token: "t", Retries: 1, RetryWait: time.Millisecond,
		StallTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big")
	data := make([]byte, 32<<20) // well beyond what socket buffers hold
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err = c.PutObject(t.Context(), digest.Sum(data), int64(len(data)), path, "big", osOpen, nil)
	if !errors.Is(err, errStalled) {
		t.Fatalf("PutObject to a stalled master = %v, want errStalled", err)
	}
}
