//go:build unix

package publish

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

// killChild is the child process of TestPublishLocalKilledAtEveryStep (see
// TestMain): it publishes and kills itself with SIGKILL at the Nth step
// that reaches a fault hook.
func killChild(at int) error {
	step := 0
	kill := func(name string) {
		step++
		if step == at {
			fmt.Fprintf(os.Stderr, "killed at step %d (%s)\n", step, name)
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	atomicfile.FaultHook = func(name string) error { kill("atomicfile " + name); return nil }
	faultHook = func(name string) { kill(name) }
	s, err := sign.LoadSigner(os.Getenv("PKGCDN_TEST_KEY"))
	if err != nil {
		return err
	}
	cfg := Config{Set: testSet, Signer: s, Now: realClock(), HashCache: os.Getenv("PKGCDN_TEST_CACHE"), Jobs: 1}
	if master := os.Getenv("PKGCDN_TEST_MASTER"); master != "" {
		c, err := NewClient(ClientConfig{URL: master, Token: "tok", Retries: -1})
		if err != nil {
			return err
		}
		if _, err := PublishRemote(context.Background(), cfg, c, os.Getenv("PKGCDN_TEST_SRC")); err != nil {
			return err
		}
		fmt.Fprintln(os.Stderr, "completed")
		return nil
	}
	root, err := layout.Open(os.Getenv("PKGCDN_TEST_ROOT"))
	if err != nil {
		return err
	}
	if _, err := PublishLocal(context.Background(), cfg, root, os.Getenv("PKGCDN_TEST_SRC")); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "completed")
	return nil
}

func TestPublishLocalKilledAtEveryStep(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "k")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	keyFile, pub := prefix+".key", prefix+".pub"
	signer, err := sign.LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	v1 := map[string]string{"All/a.pkg": "a1", "All/b.pkg": "b1", "meta.conf": "m1"}
	v2 := map[string]string{"All/b.pkg": "b2", "All/c.pkg": "c2"}
	for at := 1; ; at++ {
		if at > 100 {
			t.Fatal("the child never completed")
		}
		src := t.TempDir()
		writeTree(t, src, v1)
		root := newRoot(t)
		cfg := Config{Set: testSet, Signer: signer, Now: realClock()}
		r1, err := PublishLocal(t.Context(), cfg, root, src)
		if err != nil {
			t.Fatal(err)
		}
		writeTree(t, src, v2)
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PKGCDN_TEST_KILL_AT="+strconv.Itoa(at), "PKGCDN_TEST_KEY="+keyFile,
			"PKGCDN_TEST_ROOT="+root.Dir, "PKGCDN_TEST_SRC="+src, "PKGCDN_TEST_CACHE="+filepath.Join(t.TempDir(), "hc"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()
		if err != nil && !killed {
			t.Fatalf("child at step %d: %v\n%s", at, err, out)
		}

		t.Logf("step %d: %s", at, out)
		// Whatever the step, the live set is whole: the old one or the new.
		m := checkConsistent(t, root, testSet, pub)
		if m.ID != r1.ID && !m.ID.After(r1.ID) {
			t.Fatalf("step %d: live set %s older than %s", at, m.ID, r1.ID)
		}
		// The rerun completes and ends with the new content announced.
		if _, err := PublishLocal(t.Context(), cfg, root, src); err != nil {
			t.Fatalf("step %d: rerun: %v", at, err)
		}
		m = checkConsistent(t, root, testSet, pub)
		got := contentOf(t, root, m)
		if len(got) != 4 || got["All/b.pkg"] != "b2" || got["All/c.pkg"] != "c2" || got["All/a.pkg"] != "a1" {
			t.Fatalf("step %d: after the rerun the live set holds %v", at, got)
		}
		data, sig, err := root.Sets()
		if err != nil {
			t.Fatal(err)
		}
		v, _ := sign.NewVerifier(pub)
		if _, err := v.Verify(data, sig); err != nil {
			t.Fatalf("step %d: SETS after the rerun: %v", at, err)
		}
		if !killed {
			t.Logf("the child completed after %d steps", at-1)
			return
		}
	}
}

// TestPublishRemoteKilledAtEveryStep kills a remote publisher at each step
// (hash cache written, objects sent, manifest signed, ...): the master's
// live set stays whole, and the rerun sends only what the master lacks.
func TestPublishRemoteKilledAtEveryStep(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "k")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	keyFile, pub := prefix+".key", prefix+".pub"
	signer, err := sign.LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	v1 := map[string]string{"All/a.pkg": "a1", "All/b.pkg": "b1"}
	v2 := map[string]string{"All/b.pkg": "b2", "All/c.pkg": "c2", "All/d.pkg": "d2"}
	for at := 1; ; at++ {
		if at > 100 {
			t.Fatal("the child never completed")
		}
		root, ts := newOrigin(t, pub, "tok")
		c := newClient(t, ts.URL, "tok")
		src := t.TempDir()
		writeTree(t, src, v1)
		cfg := Config{Set: testSet, Signer: signer, Now: realClock()}
		if _, err := PublishRemote(t.Context(), cfg, c, src); err != nil {
			t.Fatal(err)
		}
		writeTree(t, src, v2)
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "PKGCDN_TEST_KILL_AT="+strconv.Itoa(at), "PKGCDN_TEST_KEY="+keyFile,
			"PKGCDN_TEST_MASTER="+ts.URL, "PKGCDN_TEST_SRC="+src, "PKGCDN_TEST_CACHE="+filepath.Join(t.TempDir(), "hc"))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		killed := errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signaled()
		if err != nil && !killed {
			t.Fatalf("child at step %d: %v\n%s", at, err, out)
		}
		checkConsistent(t, root, testSet, pub)
		held := 0
		for _, s := range []string{"b2", "c2", "d2"} {
			if ok, _ := root.HasObject(digest.Sum([]byte(s))); ok {
				held++
			}
		}
		res, err := PublishRemote(t.Context(), cfg, c, src)
		if err != nil {
			t.Fatalf("step %d: rerun: %v", at, err)
		}
		if res.New && res.Sent != 3-held {
			t.Errorf("step %d: rerun sent %d objects, the master lacked %d", at, res.Sent, 3-held)
		}
		m := checkConsistent(t, root, testSet, pub)
		if got := contentOf(t, root, m); len(got) != 4 || got["All/b.pkg"] != "b2" || got["All/d.pkg"] != "d2" {
			t.Fatalf("step %d: after the rerun the live set holds %v", at, got)
		}
		if !killed {
			t.Logf("the child completed after %d steps", at-1)
			return
		}
	}
}
