package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// testSet is the set name the suite publishes: two segments, as FreeBSD's.
const testSet = "FreeBSD:14:amd64/latest"

// env is one test's signing key, publish token and scratch directory.
type env struct {
	dir       string
	key, pub  string // signing key pair files
	verifier  *sign.Verifier
	token     string
	tokenFile string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), token: "chaos-secret-token"}
	prefix := filepath.Join(e.dir, "signing")
	run(t, bin("pkgpublish"), "keygen", "--out", prefix)
	e.key, e.pub = prefix+".key", prefix+".pub"
	v, err := sign.NewVerifier(e.pub)
	if err != nil {
		t.Fatal(err)
	}
	e.verifier = v
	e.tokenFile = filepath.Join(e.dir, "token")
	if err := os.WriteFile(e.tokenFile, []byte(e.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// path returns a new path under the env's directory.
func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

// server is a pkgserve process (master or edge) that can be killed and
// restarted on the same addresses.
type server struct {
	owner testing.TB // the test that started it: the process lives as long as it
	args  []string
	p     *proc
	url   string // public listener
	admin string // admin listener
}

// startServer runs pkgserve with args plus --listen and --admin-listen.
func startServer(t testing.TB, args ...string) *server {
	t.Helper()
	addr, admin := freeAddr(t), freeAddr(t)
	s := &server{owner: t, args: append(args, "--listen", addr, "--admin-listen", admin),
		url: "http://" + addr, admin: "http://" + admin}
	s.restart(t)
	return s
}

// restart starts the process again with the same flags (after a kill) and
// waits until it answers. The process belongs to the test that started the
// server, not to a subtest that restarts it.
func (s *server) restart(t testing.TB) {
	t.Helper()
	s.p = start(s.owner, bin("pkgserve"), s.args...)
	waitHTTP(t, s.p, s.admin+"/healthz")
	waitHTTP(t, s.p, s.url+"/.pkgcdn/sets")
}

// startMaster runs a master on root with the publish API enabled.
func (e *env) startMaster(t testing.TB, root string, extra ...string) *server {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--root", root, "--publish-token-file", e.tokenFile, "--trusted-key", e.pub}, extra...)
	return startServer(t, args...)
}

// startEdge runs a manifest-aware edge in front of upstreams.
func (e *env) startEdge(t testing.TB, cacheDir string, upstreams []string, extra ...string) *server {
	t.Helper()
	args := []string{"--edge", "--cache-dir", cacheDir, "--trusted-key", e.pub}
	for _, u := range upstreams {
		args = append(args, "--upstream", u)
	}
	return startServer(t, append(args, extra...)...)
}

// publishLocal publishes src into root and returns the new set ID.
func (e *env) publishLocal(t testing.TB, root, src string, extra ...string) setid.ID {
	t.Helper()
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"publish", "--root", root, "--set", testSet, "--key", e.key, "--no-hash-cache"}, extra...)
	return parseID(t, run(t, bin("pkgpublish"), append(args, src)...))
}

// publishArgs are the arguments of a remote publish of src to master.
func (e *env) publishArgs(master, src string, extra ...string) []string {
	args := append([]string{"publish", "--master", master, "--token-file", e.tokenFile, "--set", testSet,
		"--key", e.key, "--no-hash-cache", "--seen-file", e.path("seen-ids.json")}, extra...)
	return append(args, src)
}

// publishRemote publishes src to the master at url over HTTP.
func (e *env) publishRemote(t testing.TB, master, src string, extra ...string) setid.ID {
	t.Helper()
	return parseID(t, run(t, bin("pkgpublish"), e.publishArgs(master, src, extra...)...))
}

func parseID(t testing.TB, out string) setid.ID {
	t.Helper()
	id, err := setid.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("publish printed %q, want a set ID", out)
	}
	return id
}

// makeRepo writes a small FreeBSD-style repository (catalogues and
// packages) and returns its directory.
func makeRepo(t testing.TB, dir string, seed uint64, packages int, total int64) string {
	t.Helper()
	if _, _, err := sampleset.Repo(dir, sampleset.RepoConfig{Seed: seed, Packages: packages, TotalBytes: total,
		MaxBytes: max(total/4, 8*sampleset.KiB)}); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sets fetches and verifies base's SETS.
func (e *env) sets(t testing.TB, base string) (setid.Sets, string) {
	t.Helper()
	r := get(t, base+"/.pkgcdn/sets")
	if r.status != http.StatusOK {
		t.Fatalf("GET %s/.pkgcdn/sets: %d %s", base, r.status, r.body)
	}
	sig := get(t, base+"/.pkgcdn/sets.minisig")
	if sig.status != http.StatusOK {
		t.Fatalf("GET %s/.pkgcdn/sets.minisig: %d", base, sig.status)
	}
	s, err := manifest.OpenSets(r.body, sig.body, e.verifier)
	if err != nil {
		t.Fatalf("SETS of %s does not verify: %v\n%s", base, err, r.body)
	}
	return s, r.header.Get("ETag")
}

// manifest fetches and verifies one manifest from base (expired ones are
// returned too: their bytes are still the truth about that set).
func (e *env) manifest(t testing.TB, base, set string, id setid.ID) *manifest.Manifest {
	t.Helper()
	m, _ := e.manifestData(t, base, set, id)
	return m
}

// manifestData is manifest plus the manifest file's bytes.
func (e *env) manifestData(t testing.TB, base, set string, id setid.ID) (*manifest.Manifest, []byte) {
	t.Helper()
	b, _ := url.Parse(base)
	r := get(t, route.ManifestURL(b, set, id, false))
	sig := get(t, route.ManifestURL(b, set, id, true))
	if r.status != http.StatusOK || sig.status != http.StatusOK {
		t.Fatalf("manifest %s/%s from %s: %d, signature %d", set, id, base, r.status, sig.status)
	}
	m, err := manifest.Open(r.body, sig.body, e.verifier, time.Now())
	if m == nil {
		t.Fatalf("manifest %s/%s from %s: %v", set, id, base, err)
	}
	return m, r.body
}

// live returns the verified manifest of set that base's SETS names.
func (e *env) live(t testing.TB, base string) *manifest.Manifest {
	t.Helper()
	s, _ := e.sets(t, base)
	ent, ok := s.Lookup(testSet)
	if !ok {
		t.Fatalf("%s: SETS has no %s", base, testSet)
	}
	m, data := e.manifestData(t, base, testSet, ent.ID)
	if digest.Sum(data) != ent.Manifest || m.ID != ent.ID || m.Set != testSet {
		t.Fatalf("%s: SETS names %s/%s (manifest sha256 %s), the manifest served is %s/%s (%s)",
			base, testSet, ent.ID, ent.Manifest, m.Set, m.ID, digest.Sum(data))
	}
	return m
}

// waitSet blocks until base's SETS lists testSet at id or newer, by
// long-polling /.pkgcdn/sets (no sleeping).
func (e *env) waitSet(t testing.TB, base string, id setid.ID) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	etag := ""
	for time.Now().Before(deadline) {
		u := base + "/.pkgcdn/sets"
		if etag != "" {
			u += "?wait=" + strings.Trim(etag, `"`)
		}
		r := do(http.MethodGet, u, nil)
		if r.err != nil {
			t.Fatalf("GET %s: %v", u, r.err)
		}
		if r.status == http.StatusOK {
			if s, err := setid.ParseSets(bytes.NewReader(r.body)); err == nil {
				if ent, ok := s.Lookup(testSet); ok && !id.After(ent.ID) {
					return
				}
			}
		}
		if et := r.header.Get("ETag"); et != "" {
			etag = et
		} else if r.status != http.StatusOK && r.status != http.StatusNotModified {
			// No SETS yet: nothing to long-poll on.
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Fatalf("%s did not switch %s to %s in time", base, testSet, id)
}

// health reads the admin listener's /healthz.
func health(t testing.TB, s *server) (degraded bool, reasons []string) {
	t.Helper()
	r := get(t, s.admin+"/healthz")
	var st struct {
		Degraded bool     `json:"degraded"`
		Reasons  []string `json:"reasons"`
	}
	if err := json.Unmarshal(r.body, &st); err != nil {
		t.Fatalf("healthz: %v: %s", err, r.body)
	}
	return st.Degraded, st.Reasons
}

// metric returns the sum of a Prometheus metric's samples on s's admin
// listener whose labels contain every one of match ("name=\"value\"").
func metric(t testing.TB, s *server, name string, match ...string) float64 {
	t.Helper()
	r := get(t, s.admin+"/metrics")
	var sum float64
	for _, line := range strings.Split(string(r.body), "\n") {
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(rest, m)
		}
		if !ok {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(rest[strings.LastIndexByte(rest, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}
