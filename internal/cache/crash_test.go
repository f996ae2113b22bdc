package cache

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
)

const (
	crashDirEnv = "PKGCDN_CACHE_CRASH_DIR"
	crashAtEnv  = "PKGCDN_CACHE_CRASH_AT"
)

// crashObjects are the objects the crash child stores, keyed by sha256.
func crashObjects() [][]byte {
	objs := make([][]byte, 5)
	for i := range objs {
		objs[i] = randBytes(200<<10+i, uint64(900+i))
	}
	return objs
}

// TestKillAtAnyStep re-executes the test binary as a child that runs the
// cache through fills, an eviction, a Meta update and a restart, and
// SIGKILLs itself at its n-th disk step, for every step the child takes.
// After each kill, New must open the directory, and every entry it offers
// must be complete and correct, with no stray file left.
func TestKillAtAnyStep(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir, os.Getenv(crashAtEnv))
		return
	}
	run := func(t *testing.T, n int) (out []byte, killed bool, dir string) {
		dir = t.TempDir()
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKillAtAnyStep$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashAtEnv+"="+strconv.Itoa(n))
		out, err := cmd.Output()
		var ee *exec.ExitError
		killed = errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		if err != nil && !killed {
			t.Fatalf("child (kill at %d): %v\n%s", n, err, out)
		}
		return out, killed, dir
	}
	out, killed, _ := run(t, 0) // count the steps
	var steps int
	if _, err := fmt.Sscanf(string(out), "steps %d", &steps); err != nil || killed {
		t.Fatalf("child reported %q (killed %v)", out, killed)
	}
	if steps < 25 {
		t.Fatalf("child took %d disk steps, want the whole life of several entries", steps)
	}
	// The children mostly wait for fsync: run several at once.
	type result struct {
		killed bool
		dir    string
		err    error
	}
	results := make([]result, steps+1)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for n := 1; n <= steps; n++ {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			r := &results[n]
			r.dir = filepath.Join(t.TempDir())
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestKillAtAnyStep$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashDirEnv+"="+r.dir, crashAtEnv+"="+strconv.Itoa(n))
			out, err := cmd.Output()
			var ee *exec.ExitError
			r.killed = errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if err != nil && !r.killed {
				r.err = fmt.Errorf("%v\n%s", err, out)
			}
		})
	}
	wg.Wait()
	objs := crashObjects()
	for n := 1; n <= steps; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			switch r := results[n]; {
			case r.err != nil:
				t.Fatalf("child (kill at %d): %v", n, r.err)
			case !r.killed:
				t.Errorf("child not killed at step %d", n)
			default:
				checkAfterCrash(t, r.dir, objs, n)
			}
		})
	}
}

func checkAfterCrash(t *testing.T, dir string, objs [][]byte, n int) {
	t.Helper()
	c, err := New(Config{Dir: dir, MaxBytes: 3 * (200<<10 + 10)})
	if err != nil {
		t.Fatalf("New after kill at step %d: %v", n, err)
	}
	defer c.Close()
	<-c.reconcileDone
	assertEmptyTmp(t, c)
	for _, b := range objs {
		key := keyOf(b)
		o, err := c.Get(key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			t.Errorf("kill at %d: Get: %v", n, err)
			continue
		}
		got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if err != nil || !bytes.Equal(got, b) || o.Meta().SHA256 != digest.SHA256(key) {
			t.Errorf("kill at %d: entry %s is not its bytes (%d bytes, %v)", n, key, len(got), err)
		}
		o.Close()
	}
	// Whatever was lost can be fetched again.
	b := objs[0]
	if got := fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b))); !bytes.Equal(got, b) {
		t.Errorf("kill at %d: refill differs", n)
	}
	c.wg.Wait()
	// No stray files: every data file has its Meta and is indexed.
	for i := range 256 {
		names, _ := readDirNames(filepath.Join(dir, "objects", fanout(byte(i))))
		for _, name := range names {
			k, isMeta, ok := parseName(name)
			c.mu.Lock()
			_, indexed := c.idx[k]
			c.mu.Unlock()
			if !ok || !indexed {
				t.Errorf("kill at %d: stray file %s (meta %v)", n, name, isMeta)
			}
		}
	}
}

// crashChild is the child's life: it dies at its n-th disk step.
func crashChild(dir, at string) {
	n, _ := strconv.Atoi(at)
	var step atomic.Int64
	hook := func(name string) error {
		if step.Add(1) == int64(n) {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return nil
	}
	atomicfile.FaultHook = hook
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	objs := crashObjects()
	cfg := Config{Dir: dir, MaxBytes: 3 * (200<<10 + 10), Fault: hook}
	c, err := New(cfg)
	if err != nil {
		fail(err)
	}
	<-c.reconcileDone // its steps in a fixed place: the same n is the same instant
	fillSync := func(c *Cache, b []byte) {
		spec := specFor(b, staticUpstream(b))
		spec.ContentAddressed = len(b)%2 == 0 // objects 0, 2, 4: no Meta sidecar
		s, err := c.Fill(keyOf(b), spec)
		if err != nil {
			fail(err)
		}
		if _, err := io.Copy(io.Discard, s.Reader(0)); err != nil {
			fail(err)
		}
		s.Close()
		c.wg.Wait()
	}
	for _, b := range objs[:4] { // the 4th evicts the 1st
		fillSync(c, b)
	}
	if err := c.UpdateMeta(keyOf(objs[1]), Meta{ETag: "x"}); err != nil {
		fail(err)
	}
	if err := c.Close(); err != nil {
		fail(err)
	}
	if c, err = New(cfg); err != nil {
		fail(err)
	}
	<-c.reconcileDone
	fillSync(c, objs[4])
	// Die without Close (the next New must reconcile), and say how far we got.
	fmt.Printf("steps %d\n", step.Load())
	os.Exit(0)
}

const rebootDirEnv = "PKGCDN_CACHE_REBOOT_DIR"

// rebootObjects are what the reboot child stores: the first two before a
// checkpoint, the last two after it.
func rebootObjects() [][]byte {
	objs := make([][]byte, 4)
	for i := range objs {
		objs[i] = randBytes(50<<10+i, uint64(950+i))
	}
	return objs
}

// TestRebootRemovesWhatNoCheckpointCovered runs a child that fills two
// objects, checkpoints, fills two more and dies without Close. Restarted
// in the same boot, the cache keeps all four (the page cache had every
// byte). Restarted after a reboot (another boot ID) with the two late
// files torn and a stray pair of files the index never named, it serves
// only the two durable entries and removes every other file: a power loss
// may have torn anything that no checkpoint covered.
func TestRebootRemovesWhatNoCheckpointCovered(t *testing.T) {
	if dir := os.Getenv(rebootDirEnv); dir != "" {
		rebootChild(dir)
		return
	}
	objs := rebootObjects()
	for _, tc := range []struct {
		name    string
		reboot  bool
		damaged bool // same boot, a late file damaged (a write-back error the child never saw)
	}{
		{"same boot", false, false},
		{"same boot, a dirty file damaged", false, true},
		{"after a reboot", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestRebootRemovesWhatNoCheckpointCovered$", "-test.count=1")
			cmd.Env = append(os.Environ(), rebootDirEnv+"="+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			paths := &Cache{objDir: filepath.Join(dir, "objects")}
			stray := randBytes(1000, 999)
			cfg := Config{Dir: dir, SyncInterval: time.Hour}
			if tc.reboot {
				cfg.BootID = func() [16]byte { return [16]byte{0xfe, 0xed} }
				for _, b := range objs[2:] { // torn by the power loss
					p := paths.dataPath(keyOf(b))
					if err := os.Chmod(p, 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.Truncate(p, 100); err != nil {
						t.Fatal(err)
					}
				}
				k := keyOf(stray)
				os.WriteFile(paths.dataPath(k), stray[:10], 0o444)
				os.WriteFile(paths.metaPath(k), []byte(`{"Size":10}`), 0o444)
			}
			if tc.damaged { // same size, one byte off
				p := paths.dataPath(keyOf(objs[2]))
				if err := os.Chmod(p, 0o644); err != nil {
					t.Fatal(err)
				}
				bad := bytes.Clone(objs[2])
				bad[len(bad)/2] ^= 1
				if err := os.WriteFile(p, bad, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := newCache(t, cfg)
			<-c.reconcileDone
			want := objs
			if tc.damaged {
				want = [][]byte{objs[0], objs[1], objs[3]}
				if _, err := c.Get(keyOf(objs[2])); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get of a damaged dirty entry = %v, want ErrNotFound", err)
				}
			}
			if tc.reboot {
				want = objs[:2]
				for _, b := range append(objs[2:], stray) {
					if _, err := c.Get(keyOf(b)); !errors.Is(err, ErrNotFound) {
						t.Errorf("Get of an entry no checkpoint covered = %v, want ErrNotFound", err)
					}
				}
			}
			for i, b := range want {
				o, err := c.Get(keyOf(b))
				if err != nil {
					t.Errorf("Get(%d): %v", i, err)
					continue
				}
				got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
				if err != nil || !bytes.Equal(got, b) {
					t.Errorf("entry %d: %d bytes, %v", i, len(got), err)
				}
				o.Close()
			}
			nfiles := 0
			for _, b := range want {
				nfiles += 2 - (len(b)-50<<10+1)%2 // content-addressed (even index): one file
			}
			if files := objectFiles(t, c); len(files) != nfiles {
				t.Errorf("files after restart: %v, want the %d of %d entries", files, nfiles, len(want))
			}
			// What was lost is fetched again, and kept.
			b := objs[3]
			if got := fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b))); !bytes.Equal(got, b) {
				t.Error("refill differs")
			}
			c.wg.Wait()
			o, err := c.Get(keyOf(b))
			if err != nil {
				t.Fatalf("Get after the refill: %v", err)
			}
			o.Close()
		})
	}
}

// rebootChild fills, checkpoints, fills again and exits without Close.
func rebootChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	c, err := New(Config{Dir: dir, SyncInterval: time.Hour})
	if err != nil {
		fail(err)
	}
	<-c.reconcileDone
	for i, b := range rebootObjects() {
		spec := specFor(b, staticUpstream(b))
		spec.ContentAddressed = i%2 == 0 // 0 and 2: no Meta sidecar
		s, err := c.Fill(keyOf(b), spec)
		if err != nil {
			fail(err)
		}
		if _, err := io.Copy(io.Discard, s.Reader(0)); err != nil {
			fail(err)
		}
		s.Close()
		c.wg.Wait()
		if i == 1 {
			if err := c.checkpoint(); err != nil {
				fail(err)
			}
		}
	}
	os.Exit(0)
}
