package origin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
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

func apiCode(t *testing.T, body []byte) apiErrorBody {
	t.Helper()
	var e apiErrorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", body, err)
	}
	return e
}

// objectFiles counts the regular files under objects/ (temp files included).
func objectFiles(t *testing.T, f *fixture) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(f.root.Dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// strangerSigner returns a signing key the fixture's master does not trust.
func strangerSigner(t *testing.T) *sign.Signer {
	t.Helper()
	dir := t.TempDir()
	if _, err := sign.GenerateKey(filepath.Join(dir, "stranger")); err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(filepath.Join(dir, "stranger.key"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPublishDisabledIs404(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PublishToken = "" })
	for _, op := range []string{"missing", "commit", "refresh", "batch", "objects/" + strings.Repeat("a", 64)} {
		resp, _ := f.api("POST", op, strings.NewReader("x"))
		if resp.StatusCode != 404 {
			t.Errorf("POST %s without a publish token configured = %s, want 404", op, resp.Status)
		}
	}
}

func TestPublishAuth(t *testing.T) {
	f := newFixture(t, nil)
	tests := []struct {
		name string
		auth string
	}{
		{"missing", ""},
		{"wrong", "Bearer wrong-token-0123456789abcdef"},
		{"prefix of the token", "Bearer " + testToken[:10]},
		{"token plus more", "Bearer " + testToken + "x"},
		{"not bearer", "Basic " + testToken},
		{"bare token", testToken},
	}
	for _, tt := range tests {
		for _, op := range []string{"missing", "commit", "objects/" + digest.Sum([]byte("x")).String()} {
			t.Run(tt.name+" "+op, func(t *testing.T) {
				method := "POST"
				if strings.HasPrefix(op, "objects/") {
					method = "PUT"
				}
				var hdr []string
				if tt.auth != "" {
					hdr = []string{"Authorization", tt.auth}
				}
				resp, body := f.do(method, "/.pkgcdn/publish/"+op, strings.NewReader("x"), hdr...)
				if resp.StatusCode != 401 || apiCode(t, body).Code != "unauthorized" {
					t.Errorf("%s %s with %q = %s %s, want 401 unauthorized", method, op, tt.auth, resp.Status, body)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
			})
		}
	}
	if objectFiles(t, f) != 0 {
		t.Error("an unauthorized upload left a file")
	}
	if got := f.metricValue("pkgcdn_origin_publish_rejected_total", "reason", "unauthorized"); got != float64(len(tests)*3) {
		t.Errorf("rejected{unauthorized} = %v, want %d", got, len(tests)*3)
	}
}

func TestPublishMissing(t *testing.T) {
	f := newFixture(t, nil)
	f.putObjects(map[string]string{"a": "have"})
	have, lack := digest.Sum([]byte("have")).String(), digest.Sum([]byte("lack")).String()
	lack2 := digest.Sum([]byte("lack2")).String()
	tests := []struct {
		name       string
		method     string
		body       string
		wantStatus int
		wantBody   string
		wantCode   string
	}{
		{"subset in order", "POST", lack + "\n" + have + "\n" + lack2 + "\n", 200, lack + "\n" + lack2 + "\n", ""},
		{"none missing", "POST", have + "\n", 200, "", ""},
		{"no final newline", "POST", lack, 200, lack + "\n", ""},
		{"empty", "POST", "", 200, "", ""},
		{"bad line", "POST", lack + "\nnot-a-hash\n", 400, "", "bad_request"},
		{"upper-case hash", "POST", strings.ToUpper(lack) + "\n", 400, "", "bad_request"},
		{"too many lines", "POST", strings.Repeat(have+"\n", maxMissingLines+1), 413, "", "too_large"},
		{"over 1 MiB", "POST", strings.Repeat("\n", maxMissingBody+1), 413, "", "too_large"},
		{"get", "GET", "", 405, "", "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.api(tt.method, "missing", strings.NewReader(tt.body))
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %s %s, want %d", resp.Status, body, tt.wantStatus)
			}
			if tt.wantCode != "" {
				if c := apiCode(t, body).Code; c != tt.wantCode {
					t.Errorf("code %q, want %q", c, tt.wantCode)
				}
			} else if string(body) != tt.wantBody {
				t.Errorf("body %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestPublishObject(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxObjectSize = 1000 })
	good := "the object's bytes"
	d := digest.Sum([]byte(good)).String()
	tests := []struct {
		name       string
		hash       string
		body       io.Reader
		length     int64 // -1: chunked
		wantStatus int
		wantCode   string
		wantStored bool
	}{
		{"bad name", "xyz", strings.NewReader(good), int64(len(good)), 400, "bad_request", false},
		{"mismatching body", d, strings.NewReader("other bytes of same len"[:len(good)]), int64(len(good)), 400, "digest_mismatch", false},
		{"no content-length", d, io.MultiReader(strings.NewReader(good)), -1, 411, "length_required", false},
		{"over max object size", d, strings.NewReader(strings.Repeat("x", 1001)), 1001, 413, "too_large", false},
		{"stored", d, strings.NewReader(good), int64(len(good)), 201, "", true},
		{"already present", d, strings.NewReader(good), int64(len(good)), 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("PUT", f.ts.URL+"/.pkgcdn/publish/objects/"+tt.hash, tt.body)
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.ContentLength = tt.length
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("PUT = %s %s, want %d", resp.Status, body, tt.wantStatus)
			}
			if tt.wantCode != "" && apiCode(t, body).Code != tt.wantCode {
				t.Errorf("code %q, want %q", apiCode(t, body).Code, tt.wantCode)
			}
			dd, _ := digest.Parse(d)
			if has, _ := f.root.HasObject(dd); has != tt.wantStored {
				t.Errorf("object stored = %v, want %v", has, tt.wantStored)
			}
			if n := objectFiles(t, f); (n == 1) != tt.wantStored || n > 1 {
				t.Errorf("%d files under objects/, want %v", n, tt.wantStored)
			}
		})
	}
	if got := f.metricValue("pkgcdn_origin_publish_objects_total"); got != 1 {
		t.Errorf("objects_total = %v, want 1", got)
	}
}

// TestPublishObjectBodyCutOff sends half a body and hangs up its sending
// side: the master answers 400 and keeps nothing.
func TestPublishObjectBodyCutOff(t *testing.T) {
	f := newFixture(t, nil)
	content := strings.Repeat("0123456789", 100_000)
	d := digest.Sum([]byte(content)).String()
	c, err := net.Dial("tcp", f.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PUT /.pkgcdn/publish/objects/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		d, testToken, len(content))
	if _, err := io.WriteString(c, content[:len(content)/2]); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || apiCode(t, body).Code != "truncated" {
		t.Errorf("cut-off body: %s %s, want 400 truncated", resp.Status, body)
	}
	if n := objectFiles(t, f); n != 0 {
		t.Errorf("%d files under objects/ after a cut-off upload, want 0", n)
	}
}

func TestPublishCommitRefusals(t *testing.T) {
	f := newFixture(t, nil)
	m1, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a1"})
	if err != nil {
		t.Fatal(err)
	}
	old, _ := f.commit(set, map[string]string{"All/a.pkg": "a2"}) // built now, replayed later
	f.putObjects(map[string]string{"a": "a2"})
	if _, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a3"}); err != nil {
		t.Fatal(err)
	}
	live := f.liveID(set)

	stranger := strangerSigner(t)

	type tc struct {
		name       string
		body       func() []byte
		ctype      string
		wantStatus int
		wantCode   string
	}
	tests := []tc{
		{name: "not json", body: func() []byte { return []byte("{") }, wantStatus: 400, wantCode: "bad_request"},
		{name: "wrong content type", ctype: "text/plain", body: func() []byte { return []byte("{}") }, wantStatus: 415, wantCode: "bad_request"},
		{name: "fields missing", body: func() []byte { return []byte(`{"manifest":"AAAA"}`) }, wantStatus: 400, wantCode: "bad_request"},
		{name: "malformed manifest", body: func() []byte {
			c, _ := f.commit(set, map[string]string{"x": "x"})
			c.ManifestData = []byte("garbage")
			return commitBody(t, c)
		}, wantStatus: 400, wantCode: "malformed"},
		{name: "missing objects", body: func() []byte {
			c, _ := f.commit(set, map[string]string{"All/a.pkg": "never uploaded", "All/b.pkg": "a3"})
			return commitBody(t, c)
		}, wantStatus: 422, wantCode: "missing_objects"},
		{name: "untrusted key", body: func() []byte {
			c, _ := f.commitSigned(set, map[string]string{"All/a.pkg": "a3"}, stranger, f.clock.Now().Add(time.Hour))
			return commitBody(t, c)
		}, wantStatus: 403, wantCode: "untrusted_key"},
		{name: "sets signed by an untrusted key", body: func() []byte {
			c, _ := f.commit(set, map[string]string{"All/a.pkg": "a3"})
			sets, _ := setid.ParseSets(bytes.NewReader(c.SetsData))
			c.SetsData, c.SetsSig = manifest.SignSets(sets, stranger)
			return commitBody(t, c)
		}, wantStatus: 403, wantCode: "untrusted_key"},
		{name: "expired", body: func() []byte {
			c, _ := f.commitSigned(set, map[string]string{"All/a.pkg": "a3"}, f.signer, f.clock.Now().Add(2*time.Minute))
			f.clock.Add(3 * time.Minute) // expired by the time it is committed
			return commitBody(t, c)
		}, wantStatus: 422, wantCode: "expired"},
		{name: "replayed older commit", body: func() []byte { return commitBody(t, old) }, wantStatus: 409, wantCode: "rollback"},
		{name: "replayed older manifest with a fresh SETS", body: func() []byte {
			c := old
			sd, _, err := f.root.Sets()
			if err != nil {
				t.Fatal(err)
			}
			cur, _ := setid.ParseSets(bytes.NewReader(sd))
			c.SetsData, c.SetsSig = manifest.SignSets(cur.With(setid.Entry{Set: set, ID: old.Manifest.ID, Manifest: digest.Sum(old.ManifestData)}), f.signer)
			return commitBody(t, c)
		}, wantStatus: 409, wantCode: "rollback"},
		{name: "stale previous", body: func() []byte {
			// Built on set 1 (as if the live set were still m1).
			c, m := f.commit(set, map[string]string{"All/a.pkg": "a3"})
			m.Previous = m1.ID
			c.ManifestData, c.ManifestSig, _ = m.Sign(f.signer)
			sd, _, _ := f.root.Sets()
			cur, _ := setid.ParseSets(bytes.NewReader(sd))
			c.SetsData, c.SetsSig = manifest.SignSets(cur.With(setid.Entry{Set: set, ID: m.ID, Manifest: digest.Sum(c.ManifestData)}), f.signer)
			c.Manifest = m
			return commitBody(t, c)
		}, wantStatus: 409, wantCode: "conflict"},
		{name: "another set published meanwhile", body: func() []byte {
			c, _ := f.commit(set, map[string]string{"All/a.pkg": "a3"})
			f.publish("debian/stable", map[string]string{"x": "a3"}) // SETS changes under c
			return commitBody(t, c)
		}, wantStatus: 409, wantCode: "sets_changed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.ctype
			if ct == "" {
				ct = "application/json"
			}
			resp, body := f.api("POST", "commit", bytes.NewReader(tt.body()), "Content-Type", ct)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("commit = %s %s, want %d", resp.Status, body, tt.wantStatus)
			}
			e := apiCode(t, body)
			if e.Code != tt.wantCode || e.Error == "" {
				t.Errorf("error %+v, want code %q and a message", e, tt.wantCode)
			}
			if tt.wantCode == "missing_objects" && (len(e.Missing) != 1 || e.Missing[0] != digest.Sum([]byte("never uploaded")).String()) {
				t.Errorf("missing = %q, want the one object never uploaded", e.Missing)
			}
			if got := f.liveID(set); got != live {
				t.Errorf("live set is %s after a refused commit, want %s unchanged", got, live)
			}
			if resp, b := f.get("/" + set + "/All/a.pkg"); string(b) != "a3" {
				t.Errorf("served %s %q after a refused commit, want a3", resp.Status, b)
			}
		})
	}
}

// TestPublishTwoPublishersOneWins: two commits built on the same live set
// race; exactly one is taken, the other gets a 409.
func TestPublishTwoPublishersOneWins(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.publishRemote(set, map[string]string{"All/a.pkg": "v1"}); err != nil {
		t.Fatal(err)
	}
	f.putObjects(map[string]string{"a": "from A", "b": "from B"})
	ca, _ := f.commit(set, map[string]string{"All/a.pkg": "from A"})
	f.clock.Add(-time.Minute)
	cb, _ := f.commit(set, map[string]string{"All/a.pkg": "from B"}) // same Previous, same ID, other bytes
	var wg sync.WaitGroup
	statuses := make([]int, 2)
	codes := make([]string, 2)
	for i, c := range []([]byte){commitBody(t, ca), commitBody(t, cb)} {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", f.ts.URL+"/.pkgcdn/publish/commit", bytes.NewReader(c))
			req.Header.Set("Authorization", "Bearer "+testToken)
			req.Header.Set("Content-Type", "application/json")
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			statuses[i] = resp.StatusCode
			var e apiErrorBody
			_ = json.NewDecoder(resp.Body).Decode(&e) // the 200 body has no code
			codes[i] = e.Code
		})
	}
	wg.Wait()
	ok, conflict := 0, 0
	for i := range statuses {
		switch {
		case statuses[i] == 200:
			ok++
		case statuses[i] == 409 && (codes[i] == "conflict" || codes[i] == "sets_changed" || codes[i] == "rollback"):
			conflict++
		default:
			t.Errorf("publisher %d: %d %q", i, statuses[i], codes[i])
		}
	}
	if ok != 1 || conflict != 1 {
		t.Errorf("statuses %v codes %q: want one 200 and one 409", statuses, codes)
	}
	resp, b := f.get("/" + set + "/All/a.pkg")
	if resp.StatusCode != 200 || (string(b) != "from A" && string(b) != "from B") {
		t.Errorf("after the race: %s %q", resp.Status, b)
	}
}

func TestPublishNotifyRetriedAfter500(t *testing.T) {
	type got struct {
		body   CommitResponse
		status int
	}
	received := make(chan got, 10)
	var mu sync.Mutex
	calls := 0
	recv := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		var b CommitResponse
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil || r.Method != "POST" {
			t.Errorf("notice: %s, %v", r.Method, err)
		}
		status := http.StatusAccepted
		if n == 1 {
			status = http.StatusInternalServerError
		}
		w.WriteHeader(status)
		received <- got{b, status}
	})
	edge := newTestServer(t, recv)
	done := make(chan string, 1)
	f := newFixture(t, func(c *Config) { c.Notify = []string{edge + "/.pkgcdn/notify"} })
	f.srv.onNotified = func(result string) { done <- result }
	m, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a"})
	if err != nil {
		t.Fatal(err)
	}
	first, second := <-received, <-received
	want := CommitResponse{Set: set, ID: m.ID.String()}
	if first.status != 500 || first.body != want || second.status != 202 || second.body != want {
		t.Errorf("notices %+v, %+v; want a 500 then a 202, both %+v", first, second, want)
	}
	if r := <-done; r != "ok" {
		t.Errorf("notice result %q, want ok", r)
	}
	if ok, retry := f.metricValue("pkgcdn_origin_notify_total", "result", "ok"), f.metricValue("pkgcdn_origin_notify_total", "result", "retry"); ok != 1 || retry != 1 {
		t.Errorf("notify_total ok=%v retry=%v, want 1 and 1", ok, retry)
	}
	if got := f.metricValue("pkgcdn_origin_publish_commits_total"); got != 1 {
		t.Errorf("commits_total = %v, want 1", got)
	}
}

func TestPublishNotifyGivesUp(t *testing.T) {
	calls := make(chan struct{}, 10)
	edge := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	done := make(chan string, 1)
	f := newFixture(t, func(c *Config) { c.Notify = []string{edge}; c.NotifyAttempts = 2 })
	f.srv.onNotified = func(result string) { done <- result }
	if _, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a"}); err != nil {
		t.Fatal(err)
	}
	<-calls
	<-calls
	if r := <-done; r != "failed" {
		t.Errorf("notice result %q, want failed", r)
	}
	if len(calls) != 0 {
		t.Errorf("%d notices beyond NotifyAttempts", len(calls))
	}
	if got := f.metricValue("pkgcdn_origin_notify_total", "result", "failed"); got != 1 {
		t.Errorf("notify_total{failed} = %v, want 1", got)
	}
}

func TestPublishStagesAheadOnHint(t *testing.T) {
	const set = "FreeBSD:14:amd64/latest"
	v1 := map[string]string{"All/a.pkg": "a1", "All/b.pkg": "b", "meta.conf": "m"}
	v2 := map[string]string{"All/a.pkg": "a2", "All/b.pkg": "b", "All/c.pkg": "c", "meta.conf": "m"}
	v3 := map[string]string{"All/b.pkg": "b", "meta.conf": "m3"}
	staging := func(f *fixture) []string {
		ents, err := os.ReadDir(filepath.Join(f.root.Dir, "staging"))
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	hint := func(f *fixture) {
		resp, body := f.api("POST", "missing?set="+url.QueryEscape(set), nil)
		if resp.StatusCode != 200 || len(body) != 0 {
			t.Fatalf("hint: %s %q", resp.Status, body)
		}
	}
	f := newFixture(t, nil)
	// As under Run, which a commit's staging of the next publish needs;
	// its end discards what is left (as Run's does).
	f.srv.running.Store(true)
	t.Cleanup(func() { _ = f.srv.discardAhead() })
	hint(f) // never published: nothing to stage
	if got := staging(f); len(got) != 0 {
		t.Fatalf("staging after a hint for an unknown set: %v", got)
	}
	f.publish(set, v1)
	for _, step := range []struct {
		name  string
		files map[string]string
		hints int
	}{
		{"one hint", v2, 1},
		{"two hints", v3, 2},
		{"no hint", v1, 0},
	} {
		for range step.hints {
			hint(f)
		}
		if step.hints > 0 {
			// The stage is built in the background: wait for it, then
			// it is the only entry of staging/.
			as := &f.srv.ahead
			as.mu.Lock()
			a := as.m[set]
			as.mu.Unlock()
			if a == nil {
				t.Fatalf("%s: no stage of %s after a hint", step.name, set)
			}
			<-a.done
			if got := staging(f); len(got) != 1 || !strings.HasPrefix(got[0], "stage-") {
				t.Fatalf("%s: staging after the hint = %v, want one stage", step.name, got)
			}
		}
		// The stage waiting for this commit (a hint's, or the last
		// commit's): the commit takes its directory over as the new set's.
		var stageIno uint64
		if got := staging(f); len(got) == 1 {
			fi, err := os.Stat(filepath.Join(f.root.Dir, "staging", got[0]))
			if err != nil {
				t.Fatal(err)
			}
			stageIno = inode(fi)
		}
		m, err := f.publishRemote(set, step.files)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if fi, err := os.Stat(f.root.SetDir(set, m.ID)); err != nil || stageIno == 0 || inode(fi) != stageIno {
			t.Errorf("%s: the new set's directory is not the stage's (inode %d, stage's %d, %v)", step.name, inode(fi), stageIno, err)
		}
		if live := f.liveID(set); live != m.ID {
			t.Fatalf("%s: live %s, want %s", step.name, live, m.ID)
		}
		rep, err := f.root.Verify(t.Context(), set, m.ID, f.verifier)
		if err != nil || !rep.OK() {
			t.Fatalf("%s: Verify = %+v, %v", step.name, rep, err)
		}
		var files []string
		err = filepath.WalkDir(f.root.SetDir(set, m.ID), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && !strings.Contains(p, ".pkgcdn") {
				files = append(files, p)
			}
			return err
		})
		if err != nil || len(files) != len(step.files) {
			t.Errorf("%s: set holds %d files (%v), want %d", step.name, len(files), err, len(step.files))
		}
		// The commit staged the set's next publish at once: the one stage
		// in staging/, built from the new live set, which the next step's
		// commit takes over (hint or not).
		as := &f.srv.ahead
		as.mu.Lock()
		a := as.m[set]
		as.mu.Unlock()
		if a == nil || a.live != m.ID {
			t.Fatalf("%s: no stage of the new live set %s after the commit", step.name, m.ID)
		}
		<-a.done
		if got := staging(f); len(got) != 1 || !strings.HasPrefix(got[0], "stage-") {
			t.Errorf("%s: staging after the commit = %v, want the next publish's stage", step.name, got)
		}
	}
	// A hint no commit follows: discardAhead (Run's end) removes its stage.
	hint(f)
	if err := f.srv.discardAhead(); err != nil {
		t.Fatal(err)
	}
	if got := staging(f); len(got) != 0 {
		t.Errorf("staging after discardAhead: %v", got)
	}
}

// With more sets than aheadMax, each new stage evicts the one unused
// longest; and a stage whose directory another process's GC removed is
// made again on the next request instead of kept until aheadTTL.
func TestStageAheadEvictsAndRebuilds(t *testing.T) {
	f := newFixture(t, nil)
	f.srv.running.Store(true)
	t.Cleanup(func() { _ = f.srv.discardAhead() })
	as := &f.srv.ahead
	stage := func(set string) *aheadStage {
		f.srv.stageAhead(set)
		as.mu.Lock()
		a := as.m[set]
		as.mu.Unlock()
		if a == nil {
			t.Fatalf("no stage of %s", set)
		}
		<-a.done
		return a
	}
	var sets []string
	for i := range aheadMax + 1 {
		set := fmt.Sprintf("FreeBSD:%d:amd64/latest", 10+i)
		f.publish(set, map[string]string{"All/a.pkg": "a" + set, "meta.conf": "m"})
		sets = append(sets, set)
		stage(set)
	}
	as.mu.Lock()
	n, first := len(as.m), as.m[sets[0]]
	as.mu.Unlock()
	if n != aheadMax || first != nil {
		t.Fatalf("%d stages kept (the first one kept: %v), want %d, the first evicted", n, first != nil, aheadMax)
	}
	last := sets[len(sets)-1]
	a := stage(last)
	if b := stage(last); b != a {
		t.Fatal("a usable stage of the live set was made again")
	}
	if err := os.RemoveAll(filepath.Join(f.root.Dir, "staging")); err != nil { // another process's GC
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(f.root.Dir, "staging"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b := stage(last); b == a || !b.st.Usable() {
		t.Fatal("a stage whose directory was removed was kept, not made again")
	}
}

// TestPublishRefresh: POST refresh re-signs the live manifest with a new
// expiry (same set ID), and refuses anything else, changing nothing.
func TestPublishRefresh(t *testing.T) {
	f := newFixture(t, nil)
	m0, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a0"}) // retained
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.publishRemote(set, map[string]string{"All/a.pkg": "a1"})
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Add(m.Expires.Sub(f.clock.Now()) + time.Second)
	if err := f.srv.Refresh(); err != nil {
		t.Fatal(err)
	}
	if st := f.health.Status(f.clock.Now()); !st.Degraded {
		t.Fatalf("expired live manifest: health %+v, want degraded", st)
	}
	stranger := strangerSigner(t)
	later := f.clock.Now().Add(manifest.DefaultValidity)
	resign := func(c layout.Commit, signer *sign.Signer) layout.Commit {
		c.ManifestData, c.ManifestSig, _ = c.Manifest.Sign(signer)
		sets, _ := setid.ParseSets(bytes.NewReader(c.SetsData))
		c.SetsData, c.SetsSig = manifest.SignSets(sets.With(setid.Entry{Set: set, ID: m.ID, Manifest: digest.Sum(c.ManifestData)}), signer)
		return c
	}
	for _, tt := range []struct {
		name       string
		body       func() []byte
		wantStatus int
		wantCode   string
	}{
		{"not json", func() []byte { return []byte("[") }, 400, "bad_request"},
		{"other files", func() []byte {
			c := f.refreshCommit(set, later)
			c.Manifest.Entries[0].Size++
			return commitBody(t, resign(c, f.signer))
		}, 422, "not_refresh"},
		{"untrusted key", func() []byte { return commitBody(t, resign(f.refreshCommit(set, later), stranger)) }, 403, "untrusted_key"},
		{"already expired", func() []byte { return commitBody(t, f.refreshCommit(set, f.clock.Now().Add(-time.Minute))) }, 422, "expired"},
		{"a retained set, not the live one", func() []byte {
			c := f.refreshCommit(set, later)
			old := *m0
			old.Expires = later
			c.Manifest = &old
			return commitBody(t, resign(c, f.signer))
		}, 409, "conflict"},
		{"set never published", func() []byte {
			c := f.refreshCommit(set, later)
			c.Manifest.Set = "debian/none"
			return commitBody(t, resign(c, f.signer))
		}, 404, "not_found"},
		{"another set published meanwhile", func() []byte {
			c := f.refreshCommit(set, later)
			if _, err := f.publishRemote("debian/stable", map[string]string{"x": "x"}); err != nil {
				t.Fatal(err)
			}
			return commitBody(t, c)
		}, 409, "sets_changed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before, _, _ := f.root.Manifest(set, m.ID)
			resp, body := f.api("POST", "refresh", bytes.NewReader(tt.body()), "Content-Type", "application/json")
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("refresh = %s %s, want %d", resp.Status, body, tt.wantStatus)
			}
			if e := apiCode(t, body); e.Code != tt.wantCode || e.Error == "" {
				t.Errorf("error %+v, want code %q and a message", e, tt.wantCode)
			}
			if after, _, _ := f.root.Manifest(set, m.ID); !bytes.Equal(before, after) {
				t.Error("a refused refresh changed the manifest")
			}
		})
	}
	if resp, _ := f.do("POST", "/.pkgcdn/publish/refresh", bytes.NewReader(commitBody(t, f.refreshCommit(set, later)))); resp.StatusCode != 401 {
		t.Errorf("refresh without the token = %s, want 401", resp.Status)
	}
	if resp, _ := f.api("GET", "refresh", nil); resp.StatusCode != 405 {
		t.Errorf("GET refresh = %s, want 405", resp.Status)
	}

	c := f.refreshCommit(set, later)
	for range 2 { // a retried refresh (its answer lost) is accepted again
		resp, body := f.api("POST", "refresh", bytes.NewReader(commitBody(t, c)), "Content-Type", "application/json")
		if resp.StatusCode != 200 {
			t.Fatalf("refresh = %s %s", resp.Status, body)
		}
	}
	if got := f.liveID(set); got != m.ID {
		t.Errorf("live set %s after a refresh, want %s", got, m.ID)
	}
	if resp, body := f.get("/.pkgcdn/manifest/" + set + "/" + m.ID.String()); resp.StatusCode != 200 || !bytes.Equal(body, c.ManifestData) {
		t.Errorf("manifest after refresh: %s, want the refreshed bytes", resp.Status)
	}
	if resp, body := f.get("/.pkgcdn/sets"); resp.StatusCode != 200 || !bytes.Equal(body, c.SetsData) {
		t.Errorf("SETS after refresh: %s %q, want the refreshed SETS", resp.Status, body)
	}
	if st := f.health.Status(f.clock.Now()); st.Degraded {
		t.Errorf("refreshed live manifest: health %+v, want ok", st)
	}
	if got := f.metricValue("pkgcdn_origin_publish_refreshes_total"); got != 2 {
		t.Errorf("publish_refreshes_total = %v, want 2", got)
	}
	if resp, b := f.get("/" + set + "/All/a.pkg"); string(b) != "a1" {
		t.Errorf("served %s %q after a refresh, want a1", resp.Status, b)
	}
}
