package origin

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/httpserve"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

const set = "FreeBSD:14:amd64/latest"

func TestServeSetFileSemantics(t *testing.T) {
	f := newFixture(t, nil)
	m1 := f.publish(set, map[string]string{"All/a.pkg": "0123456789abcdef", "meta.conf": "version = 2;\n"})
	m2 := f.publish(set, map[string]string{"All/a.pkg": "0123456789abcdef", "meta.conf": "version = 3;\n"})
	aETag := `"` + digest.Sum([]byte("0123456789abcdef")).String() + `"`
	aMod := m1.ID.Time().Format(http.TimeFormat) // unchanged since set 1
	metaMod := m2.ID.Time().Format(http.TimeFormat)
	path := "/" + set + "/All/a.pkg"

	tests := []struct {
		name       string
		method     string
		path       string
		hdr        []string
		wantStatus int
		wantBody   string
		wantHdr    map[string]string
	}{
		{name: "get", method: "GET", path: path, wantStatus: 200, wantBody: "0123456789abcdef",
			wantHdr: map[string]string{"ETag": aETag, "Last-Modified": aMod, "Cache-Control": "public, no-cache",
				"X-Pkgcdn-Set": set, "X-Pkgcdn-Set-Id": m2.ID.String(), "Content-Length": "16",
				"Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}},
		{name: "last-modified of a changed path is its set's ID", method: "GET", path: "/" + set + "/meta.conf",
			wantStatus: 200, wantBody: "version = 3;\n",
			wantHdr: map[string]string{"Last-Modified": metaMod, "Content-Type": "text/plain; charset=utf-8"}},
		{name: "head", method: "HEAD", path: path, wantStatus: 200, wantBody: "",
			wantHdr: map[string]string{"ETag": aETag, "Content-Length": "16", "Last-Modified": aMod}},
		{name: "single range", method: "GET", path: path, hdr: []string{"Range", "bytes=2-5"}, wantStatus: 206,
			wantBody: "2345", wantHdr: map[string]string{"Content-Range": "bytes 2-5/16", "ETag": aETag}},
		{name: "resume without If-Range", method: "GET", path: path, hdr: []string{"Range", "bytes=10-"}, wantStatus: 206,
			wantBody: "abcdef", wantHdr: map[string]string{"Content-Range": "bytes 10-15/16"}},
		{name: "unsatisfiable range", method: "GET", path: path, hdr: []string{"Range", "bytes=100-"}, wantStatus: 416},
		{name: "if-none-match", method: "GET", path: path, hdr: []string{"If-None-Match", aETag}, wantStatus: 304,
			wantHdr: map[string]string{"ETag": aETag}},
		{name: "if-none-match other", method: "GET", path: path, hdr: []string{"If-None-Match", `"00"`}, wantStatus: 200,
			wantBody: "0123456789abcdef"},
		{name: "if-modified-since equal", method: "GET", path: path, hdr: []string{"If-Modified-Since", aMod}, wantStatus: 304},
		{name: "if-modified-since later", method: "GET", path: path,
			hdr: []string{"If-Modified-Since", m2.ID.Time().Add(time.Hour).Format(http.TimeFormat)}, wantStatus: 304},
		{name: "if-modified-since earlier", method: "GET", path: path,
			hdr: []string{"If-Modified-Since", m1.ID.Time().Add(-time.Second).Format(http.TimeFormat)}, wantStatus: 200,
			wantBody: "0123456789abcdef"},
		{name: "pkg's leading double slash", method: "GET", path: "//" + set + "/All/a.pkg", wantStatus: 200,
			wantBody: "0123456789abcdef"},
		{name: "post", method: "POST", path: path, wantStatus: 405, wantHdr: map[string]string{"Allow": "GET, HEAD"}},
		{name: "propfind", method: "PROPFIND", path: path, wantStatus: 405, wantHdr: map[string]string{"Allow": "GET, HEAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.do(tt.method, tt.path, nil, tt.hdr...)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("%s %s = %s, want %d", tt.method, tt.path, resp.Status, tt.wantStatus)
			}
			if tt.wantBody != "" || tt.wantStatus == 200 {
				if string(body) != tt.wantBody {
					t.Errorf("body = %q, want %q", body, tt.wantBody)
				}
			}
			for k, v := range tt.wantHdr {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}

	t.Run("multi range", func(t *testing.T) {
		resp, body := f.get(path, "Range", "bytes=0-1,4-5")
		if resp.StatusCode != 206 {
			t.Fatalf("status %s, want 206", resp.Status)
		}
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			t.Fatalf("Content-Type %q, want multipart/byteranges", resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var parts []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			parts = append(parts, p.Header.Get("Content-Range")+"="+string(b))
		}
		want := []string{"bytes 0-1/16=01", "bytes 4-5/16=45"}
		if fmt.Sprint(parts) != fmt.Sprint(want) {
			t.Errorf("parts = %q, want %q", parts, want)
		}
	})
}

func TestServeInternalURLs(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Mirrors = []string{"http://m1.example/", "http://m2.example/"} })
	m := f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	setsData, setsSig, err := f.root.Sets()
	if err != nil {
		t.Fatal(err)
	}
	mData, mSig, err := f.root.Manifest(set, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	hash := digest.Sum([]byte("aaa")).String()
	tests := []struct {
		name, path string
		want       []byte
		cache      string
		etag       string
	}{
		{"sets", "/.pkgcdn/sets", setsData, "public, max-age=5", `"` + digest.Sum(setsData).String() + `"`},
		{"sets sig", "/.pkgcdn/sets.minisig", setsSig, "public, max-age=5", `"` + digest.Sum(setsSig).String() + `"`},
		{"manifest", "/.pkgcdn/manifest/" + set + "/" + m.ID.String(), mData, "public, no-cache", `"` + digest.Sum(mData).String() + `"`},
		{"manifest sig", "/.pkgcdn/manifest/" + set + "/" + m.ID.String() + ".minisig", mSig, "public, no-cache", `"` + digest.Sum(mSig).String() + `"`},
		{"object", "/.pkgcdn/objects/sha256/" + hash, []byte("aaa"), "public, max-age=31536000, immutable", `"` + hash + `"`},
		{"mirror list", "/", []byte("URL: http://m1.example/\nURL: http://m2.example/\n"), "public, max-age=300", ""},
		{"mirror list at the repository URL", "/" + set + "/", []byte("URL: http://m1.example/\nURL: http://m2.example/\n"), "public, max-age=300", ""},
		{"mirror list at the repository URL without slash", "/" + set, []byte("URL: http://m1.example/\nURL: http://m2.example/\n"), "public, max-age=300", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.get(tt.path)
			if resp.StatusCode != 200 || !bytes.Equal(body, tt.want) {
				t.Fatalf("GET %s = %s %q, want 200 %q", tt.path, resp.Status, body, tt.want)
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache {
				t.Errorf("Cache-Control = %q, want %q", got, tt.cache)
			}
			if tt.etag != "" {
				if got := resp.Header.Get("ETag"); got != tt.etag {
					t.Errorf("ETag = %q, want %q", got, tt.etag)
				}
				resp, _ := f.get(tt.path, "If-None-Match", tt.etag)
				if resp.StatusCode != 304 {
					t.Errorf("If-None-Match: %s, want 304", resp.Status)
				}
			}
			if strings.Contains(tt.path, "/manifest/") && resp.Header.Get("Last-Modified") != "" {
				// A refresh re-signs a manifest: its ETag changes, not its set ID's time.
				t.Errorf("manifest with Last-Modified %q: If-Modified-Since would keep a stale copy", resp.Header.Get("Last-Modified"))
			}
		})
	}
}

func TestServeNotFound(t *testing.T) {
	f := newFixture(t, nil)
	m := f.publish(set, map[string]string{"All/a.pkg": "aaa", "All/sub/b.pkg": "bbb"})
	other, _ := digest.Parse(strings.Repeat("0", 64))
	for _, p := range []string{
		"/",                      // no mirrors configured
		"/" + set,                // the set itself
		"/" + set + "/",          // its directory
		"/" + set + "/All",       // a directory
		"/" + set + "/All/",      // a directory
		"/" + set + "/All/sub",   // a directory
		"/" + set + "/nope.pkg",  // missing
		"/" + set + "/meta.conf", // pkg's fallback names: fast 404
		"/" + set + "/.pkgcdn/manifest",
		"/" + set + "/.pkgcdn/manifest.minisig",
		"/" + set + "/" + m.ID.String() + "/All/a.pkg",
		"/" + set + "/current/All/a.pkg",
		"/sets/" + set + "/current/All/a.pkg",
		"/sets/" + set + "/" + m.ID.String() + "/All/a.pkg",
		"/objects/sha256/" + digest.Sum([]byte("aaa")).String()[:2] + "/" + digest.Sum([]byte("aaa")).String(),
		"/SETS", "/SETS.minisig", "/.lock", "/staging/", "/staging/x",
		"/.pkgcdn/", "/.pkgcdn/staging", "/.pkgcdn/.lock", "/.pkgcdn/SETS", "/.pkgcdn/notify",
		"/.pkgcdn/publish/", "/.pkgcdn/objects/sha256/", "/.pkgcdn/objects/sha256/" + other.String(),
		"/.pkgcdn/manifest/" + set + "/20200101T000000Z",
		"/.pkgcdn/manifest/nosuchset/" + m.ID.String(),
		"/nosuchset/All/a.pkg",
	} {
		t.Run(p, func(t *testing.T) {
			resp, body := f.get(p)
			if resp.StatusCode != 404 {
				t.Errorf("GET %s = %s %q, want 404", p, resp.Status, body)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("GET %s: Cache-Control %q, want no-store", p, cc)
			}
		})
	}
}

// TestServeHostilePathsStayInRoot sends raw request lines (no client-side
// cleaning) and checks that nothing outside the root, nor any secret
// inside it, is ever served.
func TestServeHostilePathsStayInRoot(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	const secret = "TOP-SECRET-outside-the-root"
	if err := os.WriteFile(filepath.Join(f.dir, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	// A secret inside the root but in no manifest, and one in staging.
	if err := os.WriteFile(filepath.Join(f.root.Dir, "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.root.Dir, "staging", "up"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root.Dir, "staging", "up", "secret.txt"), []byte(secret), 0o644); err != nil {
		t.Fatal(err)
	}
	host := f.ts.Listener.Addr().String()
	s := "/" + set
	tests := []string{
		"/../secret.txt",
		"/../../secret.txt",
		s + "/../../../../secret.txt",
		s + "/All/../../../../../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2E%2E/%2e%2e/secret.txt",
		s + "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
		s + "/..%2f..%2f..%2f..%2fsecret.txt",
		s + "/All%2f..%2f..%2fsecret.txt",
		"/..%2fsecret.txt",
		"/%2e%2e%2fsecret.txt",
		s + "/All/..%5c..%5c..%5csecret.txt",
		s + `/All\..\..\..\secret.txt`,
		s + "/All/a.pkg%00.txt",
		s + "/All/%00",
		s + "/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
		s + "/%c0%af..%c0%af..%c0%afsecret.txt",
		s + "/%e0%80%ae%e0%80%ae/secret.txt",
		"//" + "secret.txt",
		"///../secret.txt",
		s + "//All//a.pkg/../../../secret.txt",
		"/secret.txt",
		"/staging/up/secret.txt",
		"/.pkgcdn/../secret.txt",
		"/.pkgcdn/objects/sha256/../../../secret.txt",
		"/.pkgcdn/manifest/../../secret.txt/20261125T030100Z",
		"/.pkgcdn/manifest/" + set + "/../../../secret.txt",
		s + "/" + strings.Repeat("a/", 3000) + "x",
		s + "/" + strings.Repeat("x", 5000),
		"/" + strings.Repeat("../", 40) + "etc/passwd",
	}
	for _, p := range tests {
		name := p
		if len(name) > 60 {
			name = name[:60]
		}
		t.Run(name, func(t *testing.T) {
			status, body := rawGet(t, host, p)
			if status != 404 && status != 400 && status != 414 && status != 431 {
				t.Errorf("GET %q = %d, want 404 or 400", p, status)
			}
			if strings.Contains(body, "TOP-SECRET") || strings.Contains(body, "root:") {
				t.Errorf("GET %q leaked: %q", p, body)
			}
			if strings.Contains(body, f.dir) {
				t.Errorf("GET %q shows a filesystem path: %q", p, body)
			}
		})
	}
}

// rawGet sends one request line exactly as given.
func rawGet(t *testing.T, host, target string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", target); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %q: %v", target, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeGrace(t *testing.T) {
	tests := []struct {
		name       string
		noGrace    bool
		depth      int
		path       string
		wantStatus int
		wantFrom   int // index of the set served
	}{
		{name: "absent from live, in previous", path: "All/old-1.0.pkg", wantStatus: 200, wantFrom: 1},
		{name: "newest older set wins", path: "All/moved.pkg", wantStatus: 200, wantFrom: 1},
		{name: "in live", path: "All/new-2.0.pkg", wantStatus: 200, wantFrom: 2},
		{name: "beyond grace depth", depth: 1, path: "All/ancient.pkg", wantStatus: 404},
		{name: "within grace depth", depth: 2, path: "All/ancient.pkg", wantStatus: 200, wantFrom: 0},
		{name: "grace off", noGrace: true, path: "All/old-1.0.pkg", wantStatus: 404},
		{name: "never published", path: "All/never.pkg", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.NoGrace, c.GraceSets = tt.noGrace, tt.depth })
			ms := []string{}
			for _, files := range []map[string]string{
				{"All/ancient.pkg": "ancient", "All/moved.pkg": "moved v0"},
				{"All/old-1.0.pkg": "old", "All/moved.pkg": "moved v1"},
				{"All/new-2.0.pkg": "new"},
			} {
				ms = append(ms, f.publish(set, files).ID.String())
			}
			resp, body := f.get("/" + set + "/" + tt.path)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET %s = %s %q, want %d", tt.path, resp.Status, body, tt.wantStatus)
			}
			if tt.wantStatus != 200 {
				return
			}
			if got := resp.Header.Get("X-Pkgcdn-Set-Id"); got != ms[tt.wantFrom] {
				t.Errorf("X-Pkgcdn-Set-Id = %s, want %s", got, ms[tt.wantFrom])
			}
			wantGrace := ""
			if tt.wantFrom != 2 {
				wantGrace = ms[2]
			}
			if got := resp.Header.Get("X-Pkgcdn-Grace"); got != wantGrace {
				t.Errorf("X-Pkgcdn-Grace = %q, want %q", got, wantGrace)
			}
		})
	}
}

// TestServeNeverMixesSetsWhileSwitching: 50 clients download one path
// while sets with different bytes for it are published over HTTP; every
// response is complete and byte-identical to the file of the set it names.
func TestServeNeverMixesSetsWhileSwitching(t *testing.T) {
	f := newFixture(t, nil)
	content := func(i int) string {
		return strings.Repeat(fmt.Sprintf("set %03d|", i), 64<<10/8)
	}
	var want sync.Map // set ID → content
	m := f.publish(set, map[string]string{"All/pkg.pkg": content(0), "meta.conf": "0"})
	want.Store(m.ID.String(), content(0))

	const clients = 50
	var stop atomic.Bool
	var requests, failures atomic.Int64
	errc := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for !stop.Load() {
				resp, err := f.ts.Client().Get(f.ts.URL + "/" + set + "/All/pkg.pkg")
				if err != nil {
					failures.Add(1)
					errc <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				requests.Add(1)
				id := resp.Header.Get("X-Pkgcdn-Set-Id")
				w, ok := want.Load(id)
				if err != nil || resp.StatusCode != 200 || !ok || string(body) != w.(string) {
					failures.Add(1)
					errc <- fmt.Errorf("set %s: status %d, %d bytes, err %v: not that set's file", id, resp.StatusCode, len(body), err)
					return
				}
			}
		})
	}
	for i := 1; i <= 10; i++ {
		files := map[string]string{"All/pkg.pkg": content(i), "meta.conf": fmt.Sprint(i)}
		// Known before it can be served.
		c, _ := f.commit(set, files)
		want.Store(c.Manifest.ID.String(), content(i))
		f.clock.Add(-time.Minute) // publishRemote builds the same ID again
		if _, err := f.publishRemote(set, files); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if failures.Load() != 0 || requests.Load() < clients {
		t.Errorf("%d requests, %d failed", requests.Load(), failures.Load())
	}
}

func TestExpiredLiveManifestDegradedButServed(t *testing.T) {
	f := newFixture(t, nil)
	m := f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	if st := f.health.Status(f.clock.Now()); st.Degraded {
		t.Fatalf("fresh set: health %+v, want ok", st)
	}
	f.clock.Add(m.Expires.Sub(f.clock.Now()) + time.Second)
	if err := f.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	st := f.health.Status(f.clock.Now())
	if !st.Degraded || len(st.Reasons) != 1 || !strings.Contains(st.Reasons[0], set) {
		t.Errorf("expired live manifest: health %+v, want degraded naming %s", st, set)
	}
	if resp, body := f.get("/" + set + "/All/a.pkg"); resp.StatusCode != 200 || string(body) != "aaa" {
		t.Errorf("expired set: %s %q, want it still served", resp.Status, body)
	}

	// A local `pkgpublish refresh` behind the server's back: same set ID,
	// a new expiry. The server must not keep judging the manifest it
	// decoded before.
	c := f.refreshCommit(set, f.clock.Now().Add(manifest.DefaultValidity))
	unlock, err := f.root.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := f.root.Refresh(t.Context(), c, f.verifier, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	if st := f.health.Status(f.clock.Now()); st.Degraded {
		t.Errorf("refreshed live manifest: health %+v, want ok", st)
	}
	if resp, body := f.get("/.pkgcdn/manifest/" + set + "/" + m.ID.String()); resp.StatusCode != 200 || !bytes.Equal(body, c.ManifestData) {
		t.Errorf("manifest after refresh: %s, want the refreshed bytes", resp.Status)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, nil)
	m := f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	f.get("/" + set + "/All/a.pkg")
	f.get("/" + set + "/All/a.pkg")
	f.get("/" + set + "/nope")
	f.get("/nosuchset/x")
	f.ts.Close() // waits for the handlers, so every observation is in
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"pkgcdn_origin_requests_total", []string{"code", "2xx", "set", set}, 2},
		{"pkgcdn_origin_response_bytes_total", []string{"code", "2xx", "set", set}, 6},
		{"pkgcdn_origin_requests_total", []string{"code", "4xx", "set", set}, 1},
		{"pkgcdn_origin_requests_total", []string{"code", "4xx", "set", ""}, 1},
		{"pkgcdn_origin_live_set_id_timestamp_seconds", []string{"set", set}, float64(m.ID.Time().Unix())},
		{"pkgcdn_origin_live_set_age_seconds", []string{"set", set}, f.clock.Now().Sub(m.ID.Time()).Seconds()},
		{"pkgcdn_origin_longpoll_waiters", nil, 0},
	}
	for _, tt := range tests {
		if got := f.metricValue(tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
}

// TestServeDamagedRootIs500: a file the live manifest lists but the disk
// lacks is a server error (pkg fails over on 5xx, gives up on 404).
func TestServeDamagedRootIs500(t *testing.T) {
	f := newFixture(t, nil)
	m := f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	p, err := f.root.FilePath(set, m.ID, "All/a.pkg")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	resp, body := f.get("/" + set + "/All/a.pkg")
	if resp.StatusCode != 500 || strings.Contains(string(body), f.dir) {
		t.Errorf("missing live file: %s %q, want 500 without a path", resp.Status, body)
	}
}

// TestServeLargeFileInStallChunks serves a file bigger than
// httpserve.StallChunk through the production wrapper, whose sendfile
// comes in pieces: every byte must be the file's, in order.
func TestServeLargeFileInStallChunks(t *testing.T) {
	f := newFixture(t, nil)
	var b strings.Builder
	for i := 0; b.Len() < 3*httpserve.StallChunk+777; i++ {
		fmt.Fprintf(&b, "%08d\n", i)
	}
	data := b.String()
	f.publish(set, map[string]string{"All/big.pkg": data})
	ts := httptest.NewServer(httpserve.Instrument(f.srv, nil, nil, time.Minute))
	defer ts.Close()
	tests := []struct {
		name, rng string
		want      string
	}{
		{"whole", "", data},
		{"resume", "bytes=200000-", data[200000:]},
		{"middle", "bytes=100-300000", data[100:300001]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", ts.URL+"/"+set+"/All/big.pkg", nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(got) != tt.want {
				t.Errorf("GET %s: %s, %d bytes (want %d), equal %v, err %v", tt.rng, resp.Status, len(got), len(tt.want), string(got) == tt.want, err)
			}
		})
	}
}

func TestSetsUnreadableDegradedThenRecovers(t *testing.T) {
	f := newFixture(t, nil)
	f.publish(set, map[string]string{"All/a.pkg": "aaa"})
	setsPath := filepath.Join(f.root.Dir, "SETS")
	good, err := os.ReadFile(setsPath)
	if err != nil {
		t.Fatal(err)
	}
	// A directory where SETS should be: unreadable even for root.
	if err := os.Rename(setsPath, setsPath+".bak"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(setsPath, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(); err == nil {
		t.Fatal("Refresh with SETS a directory: nil error")
	}
	if st := f.health.Status(f.clock.Now()); !st.Degraded {
		t.Errorf("health %+v, want degraded", st)
	}
	if resp, body := f.get("/.pkgcdn/sets"); resp.StatusCode != 200 || string(body) != string(good) {
		t.Errorf("SETS while unreadable: %s, want the last good one", resp.Status)
	}
	if resp, _ := f.get("/" + set + "/All/a.pkg"); resp.StatusCode != 200 {
		t.Errorf("file while SETS unreadable: %s, want 200", resp.Status)
	}
	if err := os.Remove(setsPath); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(setsPath+".bak", setsPath); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	if st := f.health.Status(f.clock.Now()); st.Degraded {
		t.Errorf("health %+v after recovery, want ok", st)
	}
}

// TestServeOverHTTP2 serves through HTTP/2 over TLS, where there is no
// sendfile and the file is read and written in pieces.
func TestServeOverHTTP2(t *testing.T) {
	f := newFixture(t, nil)
	var b strings.Builder
	for i := 0; b.Len() < 2*httpserve.StallChunk+99; i++ {
		fmt.Fprintf(&b, "%08d\n", i)
	}
	data := b.String()
	m := f.publish(set, map[string]string{"All/big.pkg": data})
	ts := httptest.NewUnstartedServer(httpserve.Instrument(f.srv, nil, nil, time.Minute))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	defer ts.Close()
	for _, rng := range []string{"", "bytes=150000-", "bytes=10-20,300-400"} {
		req, _ := http.NewRequest("GET", ts.URL+"/"+set+"/All/big.pkg", nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || err != nil {
			t.Fatalf("GET %q: %s over %s, %v", rng, resp.Status, resp.Proto, err)
		}
		switch rng {
		case "":
			if string(got) != data || resp.Header.Get("X-Pkgcdn-Set-Id") != m.ID.String() {
				t.Errorf("whole file over HTTP/2: %d bytes, equal %v", len(got), string(got) == data)
			}
		case "bytes=150000-":
			if resp.StatusCode != 206 || string(got) != data[150000:] {
				t.Errorf("range over HTTP/2: %s, %d bytes", resp.Status, len(got))
			}
		default:
			if resp.StatusCode != 206 || !strings.Contains(string(got), data[10:21]) || !strings.Contains(string(got), data[300:401]) {
				t.Errorf("multi-range over HTTP/2: %s, %q", resp.Status, got)
			}
		}
	}
}

// TestServeFollowsCurrentAtOnce: a set switched behind the server's back
// (a local `pkgpublish --root`) is served from the next request on, before
// any refresh, whole, with every file of the new set.
func TestServeFollowsCurrentAtOnce(t *testing.T) {
	f := newFixture(t, nil)
	m1 := f.publish(set, map[string]string{"All/a.pkg": "111", "All/big.pkg": strings.Repeat("1", 100<<10)})
	check := func(when, id, want string) {
		t.Helper()
		for _, p := range []string{"All/a.pkg", "All/big.pkg"} {
			resp, body := f.get("/" + set + "/" + p)
			if resp.StatusCode != 200 || resp.Header.Get(hdrSetID) != id || len(body) == 0 || body[0] != want[0] {
				t.Errorf("%s: GET %s = %s, set %s, body %.5q, want 200 from %s, %q", when, p, resp.Status,
					resp.Header.Get(hdrSetID), body, id, want)
			}
		}
	}
	check("first set", m1.ID.String(), "1")
	m2 := f.publishLocal(set, map[string]string{"All/a.pkg": "222", "All/big.pkg": strings.Repeat("2", 100<<10)})
	check("switched, not refreshed", m2.ID.String(), "2")
	m3 := f.publishLocal(set, map[string]string{"All/a.pkg": "333", "All/big.pkg": strings.Repeat("3", 100<<10)})
	check("switched again", m3.ID.String(), "3")
}

// TestServeLiveSetCollectedMeanwhile: the set a request read from
// `current` is switched away from and collected by GC before its file is
// opened (a GC grace that short). The request reads `current` again and is
// served from the set it names: never a 404 or 500 for a file the live set
// has. The race is made certain by a stale entry in the live-set reader.
func TestServeLiveSetCollectedMeanwhile(t *testing.T) {
	for _, small := range []int64{0, -1} {
		t.Run(fmt.Sprintf("SmallFileBytes=%d", small), func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.SmallFileBytes = small })
			f.publish(set, map[string]string{"All/a.pkg": "one"})
			m2 := f.publish(set, map[string]string{"All/a.pkg": "two"})
			m3 := f.publishLocal(set, map[string]string{"All/a.pkg": "three"})
			var calls atomic.Int64
			f.srv.onLive = func(_ string, id setid.ID) setid.ID {
				if calls.Add(1) == 1 {
					return m2.ID // read just before the switch
				}
				return id
			}
			unlock, err := f.root.Lock(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			rep, err := f.root.GC(t.Context(), layout.Policy{Grace: time.Nanosecond, Now: f.clock.Now().Add(time.Hour)})
			if uerr := unlock(); err != nil || uerr != nil {
				t.Fatal(err, uerr)
			}
			if len(rep.SetsRemoved) != 2 {
				t.Fatalf("GC removed %v, want the two older sets", rep.SetsRemoved)
			}
			resp, body := f.get("/" + set + "/All/a.pkg")
			if calls.Load() != 1 {
				t.Errorf("%d requests, want 1", calls.Load())
			}
			if resp.StatusCode != 200 || string(body) != "three" || resp.Header.Get(hdrSetID) != m3.ID.String() ||
				resp.Header.Get(hdrGrace) != "" {
				t.Errorf("GET = %s %q, set %s, grace %q; want 200 %q from %s", resp.Status, body,
					resp.Header.Get(hdrSetID), resp.Header.Get(hdrGrace), "three", m3.ID)
			}
		})
	}
}

// TestServeSetDirectoryReplaced: an operator replaces a set's directory by
// a copy (the master keeps a descriptor of the directory) and a publish
// then switches the copy to a new set. From the next refresh on at the
// latest, the master serves the new set.
func TestServeSetDirectoryReplaced(t *testing.T) {
	f := newFixture(t, nil)
	m1 := f.publish(set, map[string]string{"All/a.pkg": "old bytes"})
	if resp, body := f.get("/" + set + "/All/a.pkg"); resp.StatusCode != 200 || string(body) != "old bytes" {
		t.Fatalf("GET = %s %q", resp.Status, body)
	}
	base := filepath.Dir(f.root.SetDir(set, m1.ID))
	copyTree(t, base, base+".copy")
	if err := os.Rename(base, base+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(base+".copy", base); err != nil {
		t.Fatal(err)
	}
	m2 := f.publishLocal(set, map[string]string{"All/a.pkg": "new bytes"})
	if err := f.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	resp, body := f.get("/" + set + "/All/a.pkg")
	if resp.StatusCode != 200 || string(body) != "new bytes" || resp.Header.Get(hdrSetID) != m2.ID.String() {
		t.Errorf("GET = %s %q from %s, want 200 %q from %s", resp.Status, body, resp.Header.Get(hdrSetID), "new bytes", m2.ID)
	}
}

// copyTree copies the directory src to dst: directories made, symlinks
// copied, files hardlinked (as a set's files are).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0o755)
		case d.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		default:
			return os.Link(p, to)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
