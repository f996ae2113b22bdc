package layout

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// The crash test re-executes the test binary (groupcache TestHTTPPool
// style): the child runs Commit and dies with os.Exit(137), as if killed,
// at the K-th fault-hook step; the parent then checks what a restarted
// server would see, and reruns the Commit.
const (
	crashDirEnv  = "LAYOUT_CRASH_DIR"
	crashStepEnv = "LAYOUT_CRASH_STEP"
)

// crashFiles are where the parent leaves the Commit for the child.
var crashFiles = []string{"manifest", "manifest.minisig", "sets", "sets.minisig"}

func writeCommit(t *testing.T, dir string, c Commit) {
	t.Helper()
	for i, b := range [][]byte{c.ManifestData, c.ManifestSig, c.SetsData, c.SetsSig} {
		if err := os.WriteFile(filepath.Join(dir, crashFiles[i]), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readCommit(t *testing.T, dir string) Commit {
	t.Helper()
	var b [4][]byte
	for i, name := range crashFiles {
		var err error
		if b[i], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return Commit{ManifestData: b[0], ManifestSig: b[1], SetsData: b[2], SetsSig: b[3]}
}

// crashChild is the child's side: commit, dying at step K.
func crashChild(t *testing.T, dir string) {
	k, err := strconv.Atoi(os.Getenv(crashStepEnv))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	setHooks(t, func(string) error {
		if n++; n == k {
			os.Exit(137) // no deferred cleanup runs: as good as SIGKILL
		}
		return nil
	})
	r, err := Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if err := commit(t, r, newKeys(t, dir), readCommit(t, dir)); err != nil {
		t.Fatal(err)
	}
	// Returning means step K was never reached: the parent sees exit 0.
}

// crashScenario prepares a root in dir and returns the Commit to crash.
type crashScenario struct {
	name  string
	setup func(t *testing.T, r *Root, k keys) (c Commit, old []setid.ID)
}

var (
	crashID1 = setid.FromTime(time.Date(2026, 11, 24, 3, 15, 0, 0, time.UTC))
	crashID2 = setid.FromTime(time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC))
)

var crashScenarios = []crashScenario{
	{"first publish", func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, "other", crashID1, setid.ID{}, files{"x": "other"}))
		return newCommit(t, r, k, set1, crashID1, setid.ID{}, files{"All/a.pkg": "a", "meta.conf": "m"}), nil
	}},
	{"next publish", func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, "other", crashID1, setid.ID{}, files{"x": "other"}))
		mustCommit(t, r, k, newCommit(t, r, k, set1, crashID1, setid.ID{},
			files{"All/a.pkg": "a1", "All/b.pkg": "b", "meta.conf": "m", "packagesite.pkg": "p1"}))
		return newCommit(t, r, k, set1, crashID2, crashID1,
			files{"All/a.pkg": "a2", "All/Hashed/c~1.pkg": "c", "meta.conf": "m", "packagesite.pkg": "p2"}), []setid.ID{crashID1}
	}},
}

func TestCommitCrashAtEveryStep(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(t, dir)
		return
	}
	keyDir := t.TempDir()
	k := newKeys(t, keyDir)
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			// A run without a crash names the steps and draws the end state.
			ref := newRoot(t)
			c, old := sc.setup(t, ref, k)
			var steps []string
			setHooks(t, func(s string) error { steps = append(steps, s); return nil })
			mustCommit(t, ref, k, c)
			setHooks(t, func(string) error { return nil })
			want := tree(t, ref.Dir)
			if len(steps) < 10 {
				t.Fatalf("only %d steps: %v", len(steps), steps)
			}

			for i, step := range steps {
				t.Run(strconv.Itoa(i+1)+"-"+step, func(t *testing.T) {
					// Parallel: the steps are independent, and mostly wait
					// for fsync. Nothing here touches the fault hooks.
					t.Parallel()
					dir := t.TempDir()
					if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
						t.Fatal(err)
					}
					for _, ext := range []string{".key", ".pub"} {
						b, _ := os.ReadFile(k.prefix + ext)
						if err := os.WriteFile(filepath.Join(dir, "key"+ext), b, 0o600); err != nil {
							t.Fatal(err)
						}
					}
					r, err := Open(filepath.Join(dir, "root"))
					if err != nil {
						t.Fatal(err)
					}
					c, _ := sc.setup(t, r, k)
					writeCommit(t, dir, c)

					cmd := exec.Command(os.Args[0], "-test.run=^TestCommitCrashAtEveryStep$", "-test.count=1")
					cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStepEnv+"="+strconv.Itoa(i+1))
					out, err := cmd.CombinedOutput()
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.ExitCode() != 137 {
						t.Fatalf("child did not die at step %d %s: %v\n%s", i+1, step, err, out)
					}

					// What a restarted master serves: the live set, complete.
					set := c.Manifest.Set
					live, err := r.Live(set)
					switch {
					case errors.Is(err, ErrNotFound) && len(old) == 0:
					case err != nil:
						t.Fatalf("Live after crash: %v", err)
					case live != c.Manifest.ID && !slices.Contains(old, live):
						t.Fatalf("Live after crash = %s", live)
					default:
						checkSet(t, r, k, set, live)
					}
					// Every set SETS announces is complete too.
					if data, _, err := r.Sets(); err == nil {
						s, err := setid.ParseSets(bytes.NewReader(data))
						if err != nil {
							t.Fatalf("SETS after crash: %v", err)
						}
						for _, e := range s {
							checkSet(t, r, k, e.Set, e.ID)
						}
					}

					// The rerun converges to the state of a run without a crash.
					mustCommit(t, r, k, c)
					if got := tree(t, r.Dir); !slices.Equal(withoutTemps(got), withoutTemps(want)) {
						t.Errorf("tree after rerun:\n%v\nwant\n%v", got, want)
					}
					if data, sig, err := r.Sets(); err != nil || !bytes.Equal(data, c.SetsData) || !bytes.Equal(sig, c.SetsSig) {
						t.Errorf("SETS after rerun is not the committed one (%v)", err)
					}
					if live, err := r.Live(set); live != c.Manifest.ID || err != nil {
						t.Errorf("Live after rerun = %s, %v", live, err)
					}
					checkSet(t, r, k, set, c.Manifest.ID)
					for _, id := range old {
						checkSet(t, r, k, set, id)
					}
					// GC clears what the crash left (temp files).
					unlock, err := r.Lock(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					defer unlock()
					if _, err := r.GC(context.Background(), Policy{Keep: 10, Now: time.Now().Add(48 * time.Hour)}); err != nil {
						t.Fatal(err)
					}
					if l := leftovers(t, r); len(l) > 0 {
						t.Errorf("leftovers after GC: %v", l)
					}
					checkSet(t, r, k, set, c.Manifest.ID)
				})
			}
		})
	}
}

func withoutTemps(paths []string) []string {
	return slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return atomicfile.IsTemp(filepath.Base(p)) })
}
