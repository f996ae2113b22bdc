package layout

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// The crash test re-executes the test binary (groupcache TestHTTPPool
// style): the child runs Commit and dies with os.Exit(137), as if killed,
// at the K-th fault-hook step; the parent then checks what a restarted
// server would see, and reruns the Commit.
const (
	crashDirEnv  = "LAYOUT_CRASH_DIR"
	crashStepEnv = "LAYOUT_CRASH_STEP"
	crashNameEnv = "LAYOUT_CRASH_NAME" // the name of step K in the reference run
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
	setHooks(t, func(step string) error {
		if n++; n == k {
			if want := os.Getenv(crashNameEnv); step != want {
				// The child's steps are not the reference run's: the
				// crash would not hit the step the parent names.
				fmt.Fprintf(os.Stderr, "step %d is %s, want %s\n", k, step, want)
				os.Exit(3)
			}
			os.Exit(137) // no deferred cleanup runs: as good as SIGKILL
		}
		return nil
	})
	r, err := Open(filepath.Join(dir, "root"))
	if err != nil {
		t.Fatal(err)
	}
	putAll(t, r, dir)
	if err := commit(t, r, newKeys(t, dir), readCommit(t, dir)); err != nil {
		t.Fatal(err)
	}
	// Returning means step K was never reached: the parent sees exit 0.
}

// crashScenario prepares a root in dir and returns the Commit to crash.
// With upload, the objects of the Commit that no set holds are taken out of
// the root again, and the child puts them (PutObject) before it commits,
// as a publisher does, so that the crash also hits PutObject's steps.
type crashScenario struct {
	name   string
	upload bool
	setup  func(t *testing.T, r *Root, k keys) (c Commit, old []setid.ID)
}

// uploadDir is where unput leaves the objects a child uploads.
const uploadDir = "upload"

// unput moves the objects of c that no set holds out of r, into dir/upload,
// and drops r's marker, so that the upload makes a new one in the reference
// run as in the child.
func unput(t *testing.T, r *Root, c Commit, dir string) {
	t.Helper()
	if err := r.syncObjects(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	if m := markers(t, r); len(m) != 0 {
		t.Fatalf("markers after a sync = %v, want none", m)
	}
	if err := os.Mkdir(filepath.Join(dir, uploadDir), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range c.Manifest.Entries {
		p := r.ObjectPath(e.SHA256)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if linkCount(fi) != 1 {
			continue
		}
		if err := os.Rename(p, filepath.Join(dir, uploadDir, e.SHA256.String())); err != nil {
			t.Fatal(err)
		}
	}
}

// putAll puts the objects unput left in dir/upload into r, in name order:
// every other one with PutObject (an upload), the others with CopyFile (a
// local publish), so that crashes hit the steps of both.
func putAll(t *testing.T, r *Root, dir string) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, uploadDir))
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range ents {
		d, err := digest.Parse(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			c, err := r.CopyFile(filepath.Join(dir, uploadDir, e.Name()), CopyOptions{})
			if err != nil || c.SHA256 != d {
				t.Fatalf("CopyFile(%s) = %s, %v", e.Name(), c.SHA256, err)
			}
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, uploadDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.PutObject(d, int64(len(b)), bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	crashID1 = setid.FromTime(time.Date(2026, 11, 24, 3, 15, 0, 0, time.UTC))
	crashID2 = setid.FromTime(time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC))
)

var crashScenarios = []crashScenario{
	{"first publish", false, func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, "other", crashID1, setid.ID{}, files{"x": "other"}))
		return newCommit(t, r, k, set1, crashID1, setid.ID{}, files{"All/a.pkg": "a", "meta.conf": "m"}), nil
	}},
	{"next publish", false, func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, "other", crashID1, setid.ID{}, files{"x": "other"}))
		mustCommit(t, r, k, newCommit(t, r, k, set1, crashID1, setid.ID{},
			files{"All/a.pkg": "a1", "All/b.pkg": "b", "meta.conf": "m", "packagesite.pkg": "p1"}))
		return newCommit(t, r, k, set1, crashID2, crashID1,
			files{"All/a.pkg": "a2", "All/Hashed/c~1.pkg": "c", "meta.conf": "m", "packagesite.pkg": "p2"}), []setid.ID{crashID1}
	}},
	{"next publish with upload", true, func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, set1, crashID1, setid.ID{}, files{"All/a.pkg": "a1", "meta.conf": "m"}))
		return newCommit(t, r, k, set1, crashID2, crashID1,
			files{"All/a.pkg": "a2", "All/b.pkg": "b", "meta.conf": "m", "packagesite.pkg": "p2"}), []setid.ID{crashID1}
	}},
	// A writer died (a power loss) after linking objects it never synced:
	// one of them partial, one not in this Commit. The Lock's Recover
	// removes the partial one and keeps the others.
	{"next publish after a writer died", false, func(t *testing.T, r *Root, k keys) (Commit, []setid.ID) {
		mustCommit(t, r, k, newCommit(t, r, k, set1, crashID1, setid.ID{}, files{"All/a.pkg": "a1", "meta.conf": "m"}))
		c := newCommit(t, r, k, set1, crashID2, crashID1, files{"All/a.pkg": "a2", "All/b.pkg": "b", "meta.conf": "m"})
		junk := []byte("an object of a publish that never committed")
		if err := r.PutObject(digest.Sum(junk), int64(len(junk)), bytes.NewReader(junk)); err != nil {
			t.Fatal(err)
		}
		dieUnsynced(t, r)
		damage(t, r.ObjectPath(digest.Sum(junk)), "truncated")
		return c, []setid.ID{crashID1}
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
			refDir := t.TempDir()
			if sc.upload {
				unput(t, ref, c, refDir)
			}
			var steps []string
			setHooks(t, func(s string) error { steps = append(steps, s); return nil })
			putAll(t, ref, refDir)
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
					if sc.upload {
						unput(t, r, c, dir)
					}

					cmd := exec.Command(os.Args[0], "-test.run=^TestCommitCrashAtEveryStep$", "-test.count=1")
					cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStepEnv+"="+strconv.Itoa(i+1), crashNameEnv+"="+step)
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
					putAll(t, r, dir)
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
