package edge_test

import (
	"bytes"
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/cache"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/edge"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// master is the real origin handler over a layout root.
type master struct {
	t      *testing.T
	root   *layout.Root
	signer *sign.Signer
	v      *sign.Verifier
	srv    *origin.Server
	ts     *httptest.Server
	now    time.Time
}

func newMaster(t *testing.T, notify []string) *master {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := layout.Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.GenerateKey(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(filepath.Join(dir, "key.key"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(filepath.Join(dir, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	m := &master{t: t, root: root, signer: s, v: v, now: time.Now().UTC().Truncate(time.Second)}
	m.srv, err = origin.New(origin.Config{Root: root, Verifier: v, PollInterval: time.Hour, Notify: notify,
		NotifyBackoff: time.Millisecond, Now: func() time.Time { return m.now }})
	if err != nil {
		t.Fatal(err)
	}
	m.ts = httptest.NewServer(m.srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; m.ts.Close() })
	return m
}

// publish commits files as the next set of name, as a local pkgpublish.
func (m *master) publish(set string, files map[string]string) *manifest.Manifest {
	t := m.t
	t.Helper()
	for _, c := range files {
		if err := m.root.PutObject(digest.Sum([]byte(c)), int64(len(c)), strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
	}
	m.now = m.now.Add(time.Minute)
	prev, _ := m.root.Live(set)
	var prevM *manifest.Manifest
	if !prev.IsZero() {
		data, _, err := m.root.Manifest(set, prev)
		if err != nil {
			t.Fatal(err)
		}
		if prevM, err = manifest.Decode(data); err != nil {
			t.Fatal(err)
		}
	}
	id := setid.Next(prev, m.now)
	man := &manifest.Manifest{Set: set, ID: id, Previous: prev, Created: m.now, Expires: m.now.Add(manifest.DefaultValidity)}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		e := manifest.Entry{Path: p, Size: int64(len(files[p])), SHA256: digest.Sum([]byte(files[p])), Modified: id}
		if prevM != nil {
			if pe, ok := prevM.Lookup(p); ok && pe.SHA256 == e.SHA256 {
				e.Modified = pe.Modified
			}
		}
		man.Entries = append(man.Entries, e)
	}
	data, sig, err := man.Sign(m.signer)
	if err != nil {
		t.Fatal(err)
	}
	var cur setid.Sets
	if sd, _, err := m.root.Sets(); err == nil {
		if cur, err = setid.ParseSets(bytes.NewReader(sd)); err != nil {
			t.Fatal(err)
		}
	}
	sd, ss := manifest.SignSets(cur.With(setid.Entry{Set: set, ID: id, Manifest: digest.Sum(data)}), m.signer)
	unlock, err := m.root.Lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	c := layout.Commit{Manifest: man, ManifestData: data, ManifestSig: sig, SetsData: sd, SetsSig: ss}
	if err := m.root.Commit(context.Background(), c, m.v, m.now); err != nil {
		t.Fatal(err)
	}
	if err := m.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	return man
}

// startEdge runs an edge (manifest-aware) in front of upstream.
func startEdge(t *testing.T, v *sign.Verifier, upstream string, longPoll bool) (*edge.Edge, string, *cache.Cache) {
	t.Helper()
	dir := t.TempDir()
	c, err := cache.New(cache.Config{Dir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	e, err := edge.New(edge.Config{Upstreams: []string{upstream}, Verifier: v, Cache: c,
		StateDir: filepath.Join(dir, "state"), NoLongPoll: !longPoll, Poll: time.Hour, NotifyInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { e.ReleaseWaiters(); cancel(); <-done; ts.Close(); c.Close() })
	return e, ts.URL, c
}

// waitSet long-polls base's SETS until set is at id or later.
func waitSet(t *testing.T, base, set string, id setid.ID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	etag := ""
	for ctx.Err() == nil {
		u := base + "/.pkgcdn/sets"
		if etag != "" {
			u += "?wait=" + strings.Trim(etag, `"`)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if sets, err := setid.ParseSets(bytes.NewReader(b)); err == nil {
				if e, ok := sets.Lookup(set); ok && !id.After(e.ID) {
					return
				}
			}
		}
		etag = resp.Header.Get("ETag")
	}
	t.Fatalf("%s did not reach %s %s", base, set, id)
}

func fetch(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, string(b)
}

func TestEdgeInFrontOfOrigin(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"long-poll", "notify"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			// The edge's address must exist before the master that notifies it.
			var edgeHandler atomic.Pointer[http.Handler]
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if h := edgeHandler.Load(); h != nil {
					(*h).ServeHTTP(w, r)
					return
				}
				http.Error(w, "not yet", http.StatusServiceUnavailable)
			}))
			t.Cleanup(front.Close)
			m := newMaster(t, []string{front.URL + "/.pkgcdn/notify"})
			const set = "FreeBSD:14:amd64/latest"
			big := strings.Repeat("package bytes ", 20000)
			m1 := m.publish(set, map[string]string{"meta.conf": "v1", "All/pkg-1.0.pkg": big, "packagesite.pkg": "cat1"})
			e, edgeURL, c := startEdge(t, m.v, m.ts.URL, mode == "long-poll")
			var h http.Handler = e
			edgeHandler.Store(&h)
			waitSet(t, edgeURL, set, m1.ID)

			resp, b := fetch(t, edgeURL+"/"+set+"/All/pkg-1.0.pkg")
			mresp, mb := fetch(t, m.ts.URL+"/"+set+"/All/pkg-1.0.pkg")
			if resp.StatusCode != http.StatusOK || b != big || mb != big {
				t.Fatalf("edge GET = %d (%d bytes)", resp.StatusCode, len(b))
			}
			for _, k := range []string{"ETag", "Last-Modified", "Content-Length", "Cache-Control", "Content-Type", "X-Pkgcdn-Set-Id"} {
				if resp.Header.Get(k) != mresp.Header.Get(k) {
					t.Errorf("%s: edge %q, master %q", k, resp.Header.Get(k), mresp.Header.Get(k))
				}
			}
			if resp, _ := fetch(t, edgeURL+"/"+set+"/data.pkg"); resp.StatusCode != http.StatusNotFound {
				t.Errorf("absent catalogue name = %d, want 404", resp.StatusCode)
			}
			// Wait for the commit of the first fill.
			for ctx := t.Context(); ctx.Err() == nil; {
				if o, err := c.Get(cache.Key(digest.Sum([]byte(big)))); err == nil {
					o.Close()
					break
				}
			}

			m2 := m.publish(set, map[string]string{"meta.conf": "v2", "All/pkg-1.0.pkg": big, "All/pkg-1.1.pkg": "new", "packagesite.pkg": "cat2"})
			if mode == "notify" {
				// What the master's --notify sends after a remote commit
				// (a local one, as here, sends none).
				body := `{"set":"` + set + `","id":"` + m2.ID.String() + `"}`
				resp, err := http.Post(edgeURL+"/.pkgcdn/notify", "application/json", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					t.Fatalf("notify = %d, want 202", resp.StatusCode)
				}
			}
			waitSet(t, edgeURL, set, m2.ID)
			resp, b = fetch(t, edgeURL+"/"+set+"/All/pkg-1.0.pkg")
			if b != big || resp.Header.Get("Cache-Status") != "pkgcdn; hit" {
				t.Errorf("unchanged package after switch: Cache-Status %q", resp.Header.Get("Cache-Status"))
			}
			if got, want := resp.Header.Get("Last-Modified"), m1.ID.Time().Format(http.TimeFormat); got != want {
				t.Errorf("Last-Modified = %q, want %q", got, want)
			}
			if _, b := fetch(t, edgeURL+"/"+set+"/meta.conf"); b != "v2" {
				t.Errorf("meta.conf = %q, want v2", b)
			}
			if _, b := fetch(t, edgeURL+"/"+set+"/All/pkg-1.1.pkg"); b != "new" {
				t.Errorf("new package = %q", b)
			}
			// A chained edge behind this one.
			_, edge2URL, _ := startEdge(t, m.v, edgeURL, true)
			waitSet(t, edge2URL, set, m2.ID)
			if _, b := fetch(t, edge2URL+"/"+set+"/All/pkg-1.0.pkg"); b != big {
				t.Error("chained edge served wrong bytes")
			}
		})
	}
}
