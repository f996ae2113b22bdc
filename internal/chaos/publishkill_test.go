package chaos

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/route"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// killPoint names one instant of a publish at which strace(1) kills the
// publisher with SIGKILL: on entering the first matching system call, which
// is made to fail so that it never takes effect. Counting calls would not
// be deterministic (strace counts per thread); a path filter is.
type killPoint struct {
	name    string
	syscall string   // e.g. "renameat"
	paths   []string // strace -P filters; the first call touching one of them
}

// straceArgs returns the strace command line that runs args under a kill point.
func (k killPoint) straceArgs(args []string) []string {
	out := []string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=" + k.syscall,
		"-e", "inject=" + k.syscall + ":error=EIO:signal=KILL:when=1"}
	for _, p := range k.paths {
		out = append(out, "-P", p)
	}
	return append(append(out, "--"), args...)
}

// needStrace fails the test if strace is missing: the kill points cannot be
// placed without it (scripts/test-deps.sh installs it).
func needStrace(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("strace")
	if err != nil {
		t.Fatal("strace(1) not found: the kill-at-each-step tests need it (apt-get install strace; scripts/test-deps.sh)")
	}
	if out, err := exec.Command(p, "-f", "-qq", "-o", "/dev/null", "true").CombinedOutput(); err != nil {
		t.Fatalf("strace cannot trace here (ptrace not permitted? run as root, or give the container CAP_SYS_PTRACE): %v: %s", err, out)
	}
	return p
}

// runKilled runs cmd and requires it to die by SIGKILL: a publish that
// finished means the kill point was never reached.
func runKilled(t testing.TB, what string, name string, args ...string) {
	t.Helper()
	out, err := runErr(t, name, args...)
	var ee *exec.ExitError
	if err == nil || !errors.As(err, &ee) {
		t.Fatalf("%s: kill point never reached (publish finished: %v)\n%s", what, err, tail(out, 4000))
	}
	if code := ee.ExitCode(); code != 128+9 && code != -1 {
		t.Fatalf("%s: publisher exited %d instead of being killed\n%s", what, code, tail(out, 4000))
	}
}

// checkServed checks that what base serves for testSet is whole published
// sets: every response carries the bytes of the set it names (sha256 and
// size against that set's signed manifest), and a pass over every file of
// the live manifest sees one set ID — or, if the server switched sets
// during the pass (a commit finishing on the master after its client was
// killed), only newer ones, never back. It repeats the pass until one
// sees a single set, and returns that set's ID and whether base's SETS
// verified (the caller knows whether it may not at this instant).
func (e *env) checkServed(t testing.TB, base string) (setid.ID, bool) {
	t.Helper()
	setsOK := true
	r := get(t, base+"/.pkgcdn/sets")
	sig := get(t, base+"/.pkgcdn/sets.minisig")
	if _, err := manifest.OpenSets(r.body, sig.body, e.verifier); err != nil {
		setsOK = false
		t.Logf("%s: SETS does not verify: %v", base, err)
	}
	ms := map[setid.ID]*manifest.Manifest{}
	man := func(id setid.ID) *manifest.Manifest {
		if m, ok := ms[id]; ok {
			return m
		}
		m := e.manifest(t, base, testSet, id)
		ms[id] = m
		return m
	}
	b, _ := url.Parse(base)
	probe := route.FileURL(b, testSet, sampleset.MetaConf)
	for range 5 {
		live, _ := servedID(t, get(t, probe))
		m := man(live)
		switched := false
		for _, ent := range m.Entries {
			u := route.FileURL(b, m.Set, ent.Path)
			r := do(http.MethodGet, u, nil)
			if r.err != nil || r.status != http.StatusOK {
				t.Fatalf("set %s: GET %s: status %d, err %v", m.ID, u, r.status, r.err)
			}
			now, from := servedID(t, r)
			switch {
			case now.After(live):
				switched = true
			case now != live:
				t.Fatalf("set %s: GET %s answered from older set %s", m.ID, u, now)
			}
			want, ok := man(from).Lookup(ent.Path)
			if !ok {
				t.Fatalf("GET %s answered from set %s, which has no such path", u, from)
			}
			if got := digest.Sum(r.body); got != want.SHA256 || int64(len(r.body)) != want.Size {
				t.Errorf("set %s: GET %s: %d bytes sha256 %s, want %d bytes %s", from, u, len(r.body), got, want.Size, want.SHA256)
			}
		}
		if !switched {
			return live, setsOK
		}
		t.Logf("%s switched sets during the check; checking again", base)
	}
	t.Fatalf("%s keeps switching sets", base)
	return setid.ID{}, false
}

// waitSetsVerify waits until base serves a SETS whose signature verifies:
// a publish that repaired SETS on disk reaches the master at its next poll.
func (e *env) waitSetsVerify(t testing.TB, base string) {
	t.Helper()
	eventually(t, 30*time.Second, base+" to serve a SETS that verifies", func() bool {
		r := do(http.MethodGet, base+"/.pkgcdn/sets", nil)
		sig := do(http.MethodGet, base+"/.pkgcdn/sets.minisig", nil)
		_, err := manifest.OpenSets(r.body, sig.body, e.verifier)
		return err == nil
	})
}

// servedID returns the live set a response was answered under and the set
// whose file it is (they differ for a path the live set dropped, served
// from an older set for grace: X-Pkgcdn-Grace names the live one).
func servedID(t testing.TB, r response) (live, from setid.ID) {
	t.Helper()
	from, err := setid.Parse(r.header.Get("X-Pkgcdn-Set-Id"))
	if err != nil {
		t.Fatalf("status %d without a valid X-Pkgcdn-Set-Id: %q", r.status, r.header.Get("X-Pkgcdn-Set-Id"))
	}
	live = from
	if g := r.header.Get("X-Pkgcdn-Grace"); g != "" {
		if live, err = setid.Parse(g); err != nil {
			t.Fatalf("bad X-Pkgcdn-Grace %q", g)
		}
	}
	return live, from
}

// stagingLeft lists what is left in root/staging.
func stagingLeft(t testing.TB, root string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(root, "staging"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, de := range ents {
		names = append(names, de.Name())
	}
	return names
}

// tempsLeft lists the atomicfile temp files (".tmp-*") under root's objects/
// and root itself: the leftovers of killed writers.
func tempsLeft(t testing.TB, root string) []string {
	t.Helper()
	var left []string
	for _, dir := range []string{root, filepath.Join(root, "objects")} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && p != dir && dir == root {
				return filepath.SkipDir
			}
			if strings.HasPrefix(d.Name(), ".tmp-") {
				left = append(left, p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	return left
}

// gcClean runs `pkgpublish gc --grace 1s` until it leaves neither staging
// nor temp files (gc keeps what is younger than the grace: a writer may
// still be at work), then checks that every retained set still verifies.
func (e *env) gcClean(t testing.TB, root string) {
	t.Helper()
	t.Logf("before gc: staging %v, %d temp files", stagingLeft(t, root), len(tempsLeft(t, root)))
	eventually(t, time.Minute, "gc to remove every leftover", func() bool {
		run(t, bin("pkgpublish"), "gc", "--root", root, "--grace", "1s")
		return len(stagingLeft(t, root)) == 0 && len(tempsLeft(t, root)) == 0
	})
	e.verifyRoot(t, root)
}

// bump gives the source tree new content (a daily rebuild) and returns one
// path that changed and one that did not.
func bump(t testing.TB, src string, seed uint64) (changed, kept string) {
	t.Helper()
	ch, _, err := sampleset.BumpVersions(src, 3, seed)
	if err != nil {
		t.Fatal(err)
	}
	return ch[0].NewPath, sampleset.LatestPkg
}

// objectPath is where root keeps the object of a file.
func objectPath(t testing.TB, root, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d, _, err := digest.FromReader(f)
	if err != nil {
		t.Fatal(err)
	}
	h := d.String()
	return filepath.Join(root, "objects", "sha256", h[:2], h)
}

// TestPublishKilledLocalAtEachStep kills a local `pkgpublish publish --root`
// with SIGKILL at each step of a publish — while hashing, while copying
// objects, after the objects while building the set in staging, between the
// set's move under sets/ and the `current` swap, between the swap and the
// SETS rewrite, between SETS and its signature — and at instants spread over
// a whole publish. What must hold after each kill: the master serves one
// whole set, every file byte-correct against that set's signed manifest and
// tagged with its ID (old set or new, never a mix); a rerun finishes and the
// new set is then live and correct; finally `pkgpublish gc` leaves no
// staging behind.
func TestPublishKilledLocalAtEachStep(t *testing.T) {
	t.Parallel()
	strace := needStrace(t)
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 1, 40, 4*sampleset.MiB)
	first := e.publishLocal(t, root, src)
	master := e.startMaster(t, root)
	e.waitSet(t, master.url, first)
	e.checkServed(t, master.url)

	pub := func(src string) []string {
		return []string{bin("pkgpublish"), "publish", "--root", root, "--set", testSet, "--key", e.key, "--no-hash-cache", src}
	}
	// ID candidates for paths that name the new set: IDs are UTC seconds,
	// at least one past the live one.
	idPaths := func(prev setid.ID, f func(id setid.ID) string) []string {
		var ps []string
		start := setid.Next(prev, time.Now())
		for i := range 120 {
			ps = append(ps, f(setid.FromTime(start.Time().Add(time.Duration(i)*time.Second))))
		}
		return ps
	}
	staging := filepath.Join(root, "staging", strings.ReplaceAll(testSet, "/", "!"))
	live := first
	for i, step := range []func(changed, kept string) killPoint{
		func(changed, kept string) killPoint {
			return killPoint{"hashing", "openat", []string{filepath.Join(src, changed)}}
		},
		func(changed, kept string) killPoint {
			return killPoint{"mid-copy (object commit)", "linkat", []string{objectPath(t, root, filepath.Join(src, changed))}}
		},
		func(changed, kept string) killPoint {
			// The first link of an object that was already there is the
			// hardlink into staging: objects are in, no manifest yet.
			return killPoint{"staging, before manifest", "linkat", []string{objectPath(t, root, filepath.Join(src, kept))}}
		},
		func(changed, kept string) killPoint {
			return killPoint{"manifest written, before move to sets/", "renameat",
				idPaths(live, func(id setid.ID) string { return staging + "-" + id.String() })}
		},
		func(changed, kept string) killPoint {
			// symlinkat's path is a temp name: filter on the call itself
			// (a publish makes exactly one).
			return killPoint{"set under sets/, before current swap", "symlinkat", nil}
		},
		func(changed, kept string) killPoint {
			return killPoint{"current swapped, before SETS", "renameat", []string{filepath.Join(root, "SETS")}}
		},
		func(changed, kept string) killPoint {
			return killPoint{"SETS written, before its signature", "renameat", []string{filepath.Join(root, "SETS.minisig")}}
		},
	} {
		changed, kept := bump(t, src, uint64(100+i))
		kp := step(changed, kept)
		t.Run(kp.name, func(t *testing.T) {
			runKilled(t, kp.name, strace, kp.straceArgs(pub(src))...)
			served, setsOK := e.checkServed(t, master.url)
			if !setsOK && kp.name != "SETS written, before its signature" {
				t.Errorf("after a kill at %q the master serves a SETS that does not verify", kp.name)
			}
			if served != live && !served.After(live) {
				t.Errorf("after a kill at %q the master serves %s, older than %s", kp.name, served, live)
			}
			id := parseID(t, run(t, pub(src)[0], pub(src)[1:]...))
			e.waitSet(t, master.url, id)
			e.waitSetsVerify(t, master.url)
			if got, ok := e.checkServed(t, master.url); got != id || !ok {
				t.Errorf("after the rerun the master serves %s (SETS verifies: %v), want %s", got, ok, id)
			}
			live = id
		})
	}

	// Kill at instants spread over a whole publish, measured first.
	bump(t, src, 200)
	t0 := time.Now()
	live = parseID(t, run(t, pub(src)[0], pub(src)[1:]...))
	d := time.Since(t0)
	const points = 8
	for k := range points {
		bump(t, src, uint64(300+k))
		delay := d * time.Duration(k) / points
		t.Run(fmt.Sprintf("after %d of %d", k, points), func(t *testing.T) {
			p := start(t, pub(src)[0], pub(src)[1:]...)
			select {
			case <-p.Done():
			case <-time.After(delay):
			}
			p.Kill()
			served, _ := e.checkServed(t, master.url)
			if served != live && !served.After(live) {
				t.Errorf("after a kill at %v the master serves %s, older than %s", delay, served, live)
			}
			id := parseID(t, run(t, pub(src)[0], pub(src)[1:]...))
			e.waitSet(t, master.url, id)
			e.waitSetsVerify(t, master.url)
			if got, ok := e.checkServed(t, master.url); got != id || !ok {
				t.Errorf("after the rerun the master serves %s (SETS verifies: %v), want %s", got, ok, id)
			}
			live = id
		})
	}

	run(t, bin("pkgpublish"), "gc", "--root", root)
	if left := stagingLeft(t, root); len(left) > 0 {
		t.Errorf("staging after gc: %v", left)
	}
	e.gcClean(t, root)
	e.waitSetsVerify(t, master.url)
	if _, ok := e.checkServed(t, master.url); !ok {
		t.Errorf("after gc the master's SETS does not verify")
	}
}

// TestPublishKilledRemoteAtEachStep kills a remote `pkgpublish publish
// --master` with SIGKILL while it hashes, once the master holds some of
// the new objects (mid-upload), once it holds all of them (before the
// commit), and at instants spread over a whole publish. What must hold
// after each kill: the master serves one whole, byte-correct set (old or
// new); a rerun finishes, sends only what is missing, and its set is then
// live; `pkgpublish gc` on the master's root leaves no staging behind.
func TestPublishKilledRemoteAtEachStep(t *testing.T) {
	t.Parallel()
	strace := needStrace(t)
	e := newEnv(t)
	root := e.path("root")
	src := makeRepo(t, e.path("src"), 2, 40, 4*sampleset.MiB)
	master := e.startMaster(t, root)
	live := e.publishRemote(t, master.url, src)
	e.waitSet(t, master.url, live)
	e.checkServed(t, master.url)
	args := func() []string { return e.publishArgs(master.url, src, "--jobs", "1") }

	after := func(t *testing.T, what string) {
		t.Helper()
		served, ok := e.checkServed(t, master.url)
		if !ok {
			t.Errorf("after a kill %s the master serves a SETS that does not verify", what)
		}
		if served != live && !served.After(live) {
			t.Errorf("after a kill %s the master serves %s, older than %s", what, served, live)
		}
		id := parseID(t, run(t, bin("pkgpublish"), args()...))
		e.waitSet(t, master.url, id)
		e.waitSetsVerify(t, master.url)
		if got, ok := e.checkServed(t, master.url); got != id || !ok {
			t.Errorf("after the rerun the master serves %s (SETS verifies: %v), want %s", got, ok, id)
		}
		live = id
	}

	t.Run("hashing", func(t *testing.T) {
		changed, _ := bump(t, src, 11)
		kp := killPoint{"hashing", "openat", []string{filepath.Join(src, changed)}}
		runKilled(t, kp.name, strace, kp.straceArgs(append([]string{bin("pkgpublish")}, args()...))...)
		after(t, "while hashing")
	})
	// Kills triggered by what the master's root holds: the new objects
	// arrive one at a time (--jobs 1).
	for _, tc := range []struct {
		name string
		need func(total int) int
	}{
		{"mid-upload", func(total int) int { return 1 }},
		{"all objects uploaded", func(total int) int { return total }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed, _ := bump(t, src, uint64(20+len(tc.name)))
			_ = changed
			want := newObjects(t, root, src)
			p := start(t, bin("pkgpublish"), args()...)
			n := tc.need(len(want))
			for !p.Exited() && countPresent(want) < n {
				time.Sleep(time.Millisecond) // polling another process's disk
			}
			p.Kill()
			t.Logf("killed with %d of %d new objects on the master (exit %v)", countPresent(want), len(want), p.Cmd.ProcessState)
			after(t, tc.name)
		})
	}
	bump(t, src, 40)
	t0 := time.Now()
	live = parseID(t, run(t, bin("pkgpublish"), args()...))
	d := time.Since(t0)
	const points = 6
	for k := range points {
		bump(t, src, uint64(50+k))
		delay := d * time.Duration(k) / points
		t.Run(fmt.Sprintf("after %d of %d", k, points), func(t *testing.T) {
			p := start(t, bin("pkgpublish"), args()...)
			select {
			case <-p.Done():
			case <-time.After(delay):
			}
			p.Kill()
			after(t, fmt.Sprintf("at %v", delay))
		})
	}
	run(t, bin("pkgpublish"), "gc", "--root", root)
	if left := stagingLeft(t, root); len(left) > 0 {
		t.Errorf("staging after gc: %v", left)
	}
	e.gcClean(t, root)
	e.waitSetsVerify(t, master.url)
	if _, ok := e.checkServed(t, master.url); !ok {
		t.Errorf("after gc the master's SETS does not verify")
	}
}

// newObjects returns the object paths of the files of src that root lacks.
func newObjects(t testing.TB, root, src string) []string {
	t.Helper()
	files, _, err := sampleset.Files(src)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range files {
		p := objectPath(t, root, filepath.Join(src, filepath.FromSlash(f)))
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		t.Fatal("the bumped source has no new object")
	}
	return out
}

func countPresent(paths []string) int {
	n := 0
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			n++
		}
	}
	return n
}
