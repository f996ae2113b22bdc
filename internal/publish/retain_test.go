package publish

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestRetainClasses(t *testing.T) {
	if _, size := retainClass(retainMax); size != retainMax || retainClassMin<<(retainClasses-1) != retainMax {
		t.Fatalf("the largest class is %d bytes, want retainMax (%d)", size, retainMax)
	}
	for _, n := range []int64{1, retainClassMin - 1, retainClassMin, retainClassMin + 1, 100 << 10, retainMax} {
		i, size := retainClass(n)
		if int64(size) < n || (i > 0 && int64(size/2) >= n) || i >= retainClasses {
			t.Errorf("retainClass(%d) = %d, %d: not the smallest class that holds it", n, i, size)
		}
	}
}

// The budget holds: a get that does not fit waits for a put, or fails
// with its context.
func TestRetainerBudget(t *testing.T) {
	r := newRetainer(1) // the least: two of the largest buffers
	a, err := r.get(t.Context(), retainMax)
	if err != nil || len(a) != retainMax {
		t.Fatalf("get = %d bytes, %v", len(a), err)
	}
	b, err := r.get(t.Context(), retainMax-10)
	if err != nil || len(b) != retainMax-10 {
		t.Fatalf("get = %d bytes, %v", len(b), err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := r.get(ctx, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get beyond the budget = %v, want it to wait until its context ends", err)
	}
	got := make(chan []byte)
	go func() {
		c, _ := r.get(t.Context(), 100)
		got <- c
	}()
	r.put(a)
	if c := <-got; len(c) != 100 {
		t.Fatalf("get after a put = %d bytes", len(c))
	}
	r.put(nil) // ignored
}

// A budget far smaller than the tree: hashing waits for uploads, queries
// go out early, and the publish completes with every byte right.
func TestPublishRemoteSmallRetainBudget(t *testing.T) {
	cfg, pub := remoteConfig(t)
	cfg.retainBudget = 1 // the least
	co := newCountingOrigin(t, pub, "tok")
	c := newClient(t, co.ts.URL, "tok")
	src := t.TempDir()
	files := map[string]string{}
	for i := range 40 {
		files[fmt.Sprintf("All/p%03d.pkg", i)] = strings.Repeat(string(rune('a'+i%26)), 20<<10+i*4000)
	}
	writeTree(t, src, files)
	r, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != len(files) {
		t.Errorf("sent %d objects, want %d", r.Sent, len(files))
	}
	if n := co.count("missing"); n < 3 {
		t.Errorf("%d missing queries, want several (each sent once its files kept a quarter of the budget)", n)
	}
	checkConsistent(t, co.root, testSet, pub)
}

// keptOpener gives the kept bytes of the objects that have them, the file
// of the others.
func TestKeptOpener(t *testing.T) {
	var opened []string
	open := func(name string) (io.ReadCloser, error) {
		opened = append(opened, name)
		return io.NopCloser(strings.NewReader("on disk " + name)), nil
	}
	objs := []Object{{Path: "/src/a", data: []byte("kept a")}, {Path: "/src/b"}}
	o := keptOpener(objs, open)
	for _, tc := range []struct{ path, want string }{{"/src/a", "kept a"}, {"/src/b", "on disk /src/b"}} {
		rc, err := o(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(rc)
		if string(got) != tc.want {
			t.Errorf("open %s = %q, want %q", tc.path, got, tc.want)
		}
	}
	if len(opened) != 1 || opened[0] != "/src/b" {
		t.Errorf("files opened: %v, want only /src/b", opened)
	}
}
