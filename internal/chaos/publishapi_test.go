package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// commitBody builds a commit request for m signed by key, with SETS = the
// master's current SETS plus m's entry.
func commitBody(t testing.TB, e *env, master string, m *manifest.Manifest, key *sign.Signer) []byte {
	t.Helper()
	mdata, msig, err := m.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := e.sets(t, master)
	sets, ssig := manifest.SignSets(cur.With(setid.Entry{Set: m.Set, ID: m.ID, Manifest: digest.Sum(mdata)}), key)
	b, err := json.Marshal(map[string][]byte{"manifest": mdata, "manifest_sig": msig, "sets": sets, "sets_sig": ssig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPublishAPIAbuse attacks the master's upload API: calls without a
// token and with a wrong one, an object whose body does not match its
// hash, an object larger than --max-object-size, a chunked body (no
// length), a body that never ends, commits that reference objects never
// uploaded, are signed by an unknown key, roll the set ID back or are not
// JSON, and two publishers at once. What must hold: each gets its status
// (401, 400, 413, 411, 422, 403, 409), nothing is stored from a refused
// object, the live set is unchanged and served byte-correct after every
// refusal, and of two concurrent publishers at least one wins and the other
// either follows it or fails with the conflict exit code.
func TestPublishAPIAbuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 20, 20, 2*sampleset.MiB)
	master := e.startMaster(t, root, "--max-object-size", fmt.Sprint(8<<20))
	live := e.publishRemote(t, master.url, src)
	e.waitSet(t, master.url, live)
	m := e.live(t, master.url)
	api := master.url + "/.pkgcdn/publish/"
	auth := []string{"Authorization", "Bearer " + e.token}
	body := []byte("an object nobody published")
	hash := digest.Sum(body).String()
	trusted, err := sign.LoadSigner(e.key)
	if err != nil {
		t.Fatal(err)
	}
	rogue := newForger(t, e).rogue
	missing := func() *manifest.Manifest {
		n := *m
		n.ID, n.Previous, n.Created, n.Expires = setid.Next(m.ID, time.Now()), m.ID, time.Now(), time.Now().Add(time.Hour)
		n.Entries = append([]manifest.Entry{{Path: "All/aaa-missing-1.0.pkg", Size: 5, SHA256: digest.Sum([]byte("never")), Modified: n.ID}}, m.Entries...)
		return &n
	}
	rollback := func() *manifest.Manifest {
		n := *m
		n.ID, n.Previous, n.Created, n.Expires = setid.FromTime(m.ID.Time().Add(-time.Hour)), setid.ID{}, m.ID.Time().Add(-time.Hour), time.Now().Add(time.Hour)
		n.Entries = append([]manifest.Entry(nil), m.Entries...)
		for i := range n.Entries {
			n.Entries[i].Modified = n.ID
		}
		return &n
	}
	for _, tc := range []struct {
		name, method, op string
		body             []byte
		hdr              []string
		want             int
	}{
		{"no token: missing", "POST", "missing", []byte(hash + "\n"), nil, 401},
		{"no token: object", "PUT", "objects/" + hash, body, nil, 401},
		{"no token: commit", "POST", "commit", []byte("{}"), nil, 401},
		{"wrong token", "POST", "missing", []byte(hash + "\n"), []string{"Authorization", "Bearer " + e.token + "x"}, 401},
		{"token as basic auth", "POST", "missing", []byte(hash + "\n"), []string{"Authorization", "Basic " + e.token}, 401},
		{"body not matching its hash", "PUT", "objects/" + hash, []byte("other bytes"), auth, 400},
		{"object over --max-object-size", "PUT", "objects/" + digest.Sum(make([]byte, 9<<20)).String(), make([]byte, 9<<20), auth, 413},
		{"object name not a hash", "PUT", "objects/../../secret", body, auth, 400},
		{"commit not JSON", "POST", "commit", []byte("\x00garbage"), append(auth, "Content-Type", "application/json"), 400},
		{"commit referencing missing objects", "POST", "commit", commitBody(t, e, master.url, missing(), trusted), append(auth, "Content-Type", "application/json"), 422},
		{"commit signed by an unknown key", "POST", "commit", commitBody(t, e, master.url, missing(), rogue), append(auth, "Content-Type", "application/json"), 403},
		{"commit rolling the set ID back", "POST", "commit", commitBody(t, e, master.url, rollback(), trusted), append(auth, "Content-Type", "application/json"), 409},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(tc.method, api+tc.op, bytes.NewReader(tc.body), tc.hdr...)
			if r.err != nil || r.status != tc.want {
				// An unknown-key commit may be refused for its SETS first: any 403.
				t.Errorf("%s %s: status %d (%s), err %v; want %d", tc.method, tc.op, r.status, bytes.TrimSpace(r.body), r.err, tc.want)
			}
			if got := do(http.MethodGet, master.url+"/.pkgcdn/objects/sha256/"+hash, nil); got.status != http.StatusNotFound {
				t.Errorf("after %s the refused object is served: %d", tc.name, got.status)
			}
			if got, _ := e.checkServed(t, master.url); got != live {
				t.Errorf("after %s the master serves %s, want %s", tc.name, got, live)
			}
		})
	}
	t.Run("chunked body", func(t *testing.T) {
		r := do("PUT", api+"objects/"+hash, io.MultiReader(bytes.NewReader(body)), auth...)
		if r.status != http.StatusLengthRequired {
			t.Errorf("chunked object: status %d, want 411", r.status)
		}
	})
	t.Run("never-ending body", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(master.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "PUT /.pkgcdn/publish/objects/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", hash, e.token, 1<<20)
		var wg sync.WaitGroup
		wg.Go(func() {
			junk := bytes.Repeat([]byte("never ending "), 8192)
			for range 1000 { // 100 MiB at most; the server stops reading after 1 MiB
				if _, err := c.Write(junk); err != nil {
					return
				}
			}
		})
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("never-ending body: %v", err)
		}
		resp.Body.Close()
		c.Close()
		wg.Wait()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("never-ending body: status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("two publishers", func(t *testing.T) {
		srcs := []string{e.path("src"), makeRepo(t, e.path("src2"), 21, 20, 2*sampleset.MiB)}
		bump(t, srcs[0], 22)
		var wg sync.WaitGroup
		codes := make([]int, 2)
		outs := make([]string, 2)
		for i, s := range srcs {
			wg.Go(func() {
				p := start(t, bin("pkgpublish"), e.publishArgs(master.url, s, "--retries", "0")...)
				codes[i] = p.Wait()
				outs[i] = p.Log()
			})
		}
		wg.Wait()
		won := 0
		for i, c := range codes {
			switch c {
			case 0:
				won++
			case 4: // exitConflict
			default:
				t.Errorf("publisher %d exited %d:\n%s", i, c, tail(outs[i], 2000))
			}
		}
		t.Logf("two concurrent publishers exited %v", codes)
		if won == 0 {
			t.Errorf("neither of two concurrent publishers won: %v", codes)
		}
		e.checkServed(t, master.url)
	})
}
