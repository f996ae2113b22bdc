package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

const testToken = "test-token-0123456789abcdef"

// clock is a settable clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t        testing.TB
	dir      string
	root     *layout.Root
	signer   *sign.Signer
	verifier *sign.Verifier
	clock    *clock
	health   *httpserve.Health
	reg      *prometheus.Registry
	srv      *Server
	ts       *httptest.Server
	stopRun  func() // stops Run and waits for it
}

// newFixture starts a Server on an empty root under httptest, with Run
// running. mod may change the Config first.
func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	rootDir := filepath.Join(dir, "root")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := layout.Open(rootDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sign.GenerateKey(filepath.Join(dir, "key")); err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(filepath.Join(dir, "key.key"))
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := sign.NewVerifier(filepath.Join(dir, "key.pub"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t: t, dir: dir, root: root, signer: signer, verifier: verifier,
		clock:  &clock{t: time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)},
		health: new(httpserve.Health),
		reg:    prometheus.NewRegistry(),
	}
	cfg := Config{
		Root:          root,
		Verifier:      verifier,
		PublishToken:  testToken,
		Now:           f.clock.Now,
		Registerer:    f.reg,
		Health:        f.health,
		PollInterval:  time.Hour, // tests call Refresh, or set their own
		NotifyBackoff: time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	f.srv, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// As in pkgserve: observed, and written under a stall deadline (whose
	// chunked sendfile is part of what is tested).
	f.ts = httptest.NewServer(httpserve.Instrument(f.srv, nil, f.srv.Observe, httpserve.DefaultStallTimeout))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.srv.Run(ctx) // always nil
	}()
	var once sync.Once
	f.stopRun = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(func() {
		f.stopRun()
		f.ts.Close()
	})
	return f
}

// commit builds a signed commit of files as the next set of name (not
// touching the root): objects are not stored.
func (f *fixture) commit(set string, files map[string]string) (layout.Commit, *manifest.Manifest) {
	f.t.Helper()
	return f.commitSigned(set, files, f.signer, f.clock.Now().Add(manifest.DefaultValidity))
}

func (f *fixture) commitSigned(set string, files map[string]string, signer *sign.Signer, expires time.Time) (layout.Commit, *manifest.Manifest) {
	f.t.Helper()
	f.clock.Add(time.Minute) // a new set ID per commit
	now := f.clock.Now()
	prev, err := f.root.Live(set)
	if err != nil && !errors.Is(err, layout.ErrNotFound) {
		f.t.Fatal(err)
	}
	var prevM *manifest.Manifest
	if !prev.IsZero() {
		data, _, err := f.root.Manifest(set, prev)
		if err != nil {
			f.t.Fatal(err)
		}
		if prevM, err = manifest.Decode(data); err != nil {
			f.t.Fatal(err)
		}
	}
	id := setid.Next(prev, now)
	m := &manifest.Manifest{Set: set, ID: id, Previous: prev, Created: now, Expires: expires}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		e := manifest.Entry{Path: p, Size: int64(len(files[p])), SHA256: digest.Sum([]byte(files[p])), Modified: id}
		if prevM != nil {
			if pe, ok := prevM.Lookup(p); ok && pe.SHA256 == e.SHA256 {
				e.Modified = pe.Modified
			}
		}
		m.Entries = append(m.Entries, e)
	}
	m.Sort()
	data, sig, err := m.Sign(signer)
	if err != nil {
		f.t.Fatal(err)
	}
	var cur setid.Sets
	if sd, _, err := f.root.Sets(); err == nil {
		if cur, err = setid.ParseSets(bytes.NewReader(sd)); err != nil {
			f.t.Fatal(err)
		}
	}
	sd, ss := manifest.SignSets(cur.With(setid.Entry{Set: set, ID: id, Manifest: digest.Sum(data)}), signer)
	return layout.Commit{Manifest: m, ManifestData: data, ManifestSig: sig, SetsData: sd, SetsSig: ss}, m
}

// refreshCommit builds the re-signed live manifest of set with a new
// expiry, and SETS naming it, as `pkgpublish refresh` does (not touching
// the root).
func (f *fixture) refreshCommit(set string, expires time.Time) layout.Commit {
	f.t.Helper()
	id := f.liveID(set)
	data, _, err := f.root.Manifest(set, id)
	if err != nil {
		f.t.Fatal(err)
	}
	m, err := manifest.Decode(data)
	if err != nil {
		f.t.Fatal(err)
	}
	m.Expires = expires
	data, sig, err := m.Sign(f.signer)
	if err != nil {
		f.t.Fatal(err)
	}
	sd, _, err := f.root.Sets()
	if err != nil {
		f.t.Fatal(err)
	}
	cur, err := setid.ParseSets(bytes.NewReader(sd))
	if err != nil {
		f.t.Fatal(err)
	}
	sd, ss := manifest.SignSets(cur.With(setid.Entry{Set: set, ID: id, Manifest: digest.Sum(data)}), f.signer)
	return layout.Commit{Manifest: m, ManifestData: data, ManifestSig: sig, SetsData: sd, SetsSig: ss}
}

func (f *fixture) putObjects(files map[string]string) {
	f.t.Helper()
	for _, c := range files {
		if err := f.root.PutObject(digest.Sum([]byte(c)), int64(len(c)), strings.NewReader(c)); err != nil {
			f.t.Fatal(err)
		}
	}
}

// publishLocal publishes files as the next set of name the way a local
// `pkgpublish --root` does: behind the server's back. It does not call
// Refresh.
func (f *fixture) publishLocal(set string, files map[string]string) *manifest.Manifest {
	f.t.Helper()
	f.putObjects(files)
	c, m := f.commit(set, files)
	unlock, err := f.root.Lock(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	defer unlock()
	if err := f.root.Commit(context.Background(), c, f.verifier, f.clock.Now()); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// publish publishes locally and lets the server know at once.
func (f *fixture) publish(set string, files map[string]string) *manifest.Manifest {
	f.t.Helper()
	m := f.publishLocal(set, files)
	if err := f.srv.Refresh(); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// do sends a request to the test server and returns the response with
// its body read.
func (f *fixture) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.ts.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.ts.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return resp, b
}

func (f *fixture) get(path string, hdr ...string) (*http.Response, []byte) {
	f.t.Helper()
	return f.do(http.MethodGet, path, nil, hdr...)
}

// api calls the publish API with the test token.
func (f *fixture) api(method, op string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	f.t.Helper()
	return f.do(method, "/.pkgcdn/publish/"+op, body, append([]string{"Authorization", "Bearer " + testToken}, hdr...)...)
}

func commitBody(t testing.TB, c layout.Commit) []byte {
	t.Helper()
	b, err := json.Marshal(commitRequest{Manifest: c.ManifestData, ManifestSig: c.ManifestSig, Sets: c.SetsData, SetsSig: c.SetsSig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishRemote publishes through the publish API, as pkgpublish does.
func (f *fixture) publishRemote(set string, files map[string]string) (*manifest.Manifest, error) {
	f.t.Helper()
	var list strings.Builder
	byHash := map[string]string{}
	for _, c := range files {
		h := digest.Sum([]byte(c)).String()
		byHash[h] = c
		list.WriteString(h + "\n")
	}
	resp, body := f.api("POST", "missing", strings.NewReader(list.String()))
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("missing: %s %s", resp.Status, body)
	}
	for _, h := range strings.Fields(string(body)) {
		resp, b := f.api("PUT", "objects/"+h, strings.NewReader(byHash[h]))
		if resp.StatusCode != 201 && resp.StatusCode != 200 {
			return nil, fmt.Errorf("put %s: %s %s", h, resp.Status, b)
		}
	}
	c, m := f.commit(set, files)
	resp, body = f.api("POST", "commit", bytes.NewReader(commitBody(f.t, c)), "Content-Type", "application/json")
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("commit: %s %s", resp.Status, body)
	}
	return m, nil
}

// liveID returns the live set ID of set on disk.
func (f *fixture) liveID(set string) setid.ID {
	f.t.Helper()
	id, err := f.root.Live(set)
	if err != nil && !errors.Is(err, layout.ErrNotFound) {
		f.t.Fatal(err)
	}
	return id
}

// metricValue returns the value of the metric name with the given labels
// (name=value pairs), or -1 if there is none.
func (f *fixture) metricValue(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

// newTestServer serves h on 127.0.0.1 for the test's lifetime.
func newTestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}
