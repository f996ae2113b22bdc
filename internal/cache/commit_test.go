package cache

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// objectFiles lists every file under objects/.
func objectFiles(t *testing.T, c *Cache) []string {
	t.Helper()
	var all []string
	for i := range 256 {
		names, err := readDirNames(filepath.Join(c.objDir, fanout(byte(i))))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, names...)
	}
	return all
}

// TestGroupCommit holds the committer inside its first batch and checks
// that readers of later fills get every byte meanwhile, that a finished but
// uncommitted fill is invisible to Get yet joined by Fill (no second
// fetch), and that the fills completed meanwhile commit as one batch.
func TestGroupCommit(t *testing.T) {
	var metaSteps atomic.Int64
	blocked, release := make(chan struct{}), make(chan struct{})
	dir := t.TempDir()
	c := newCache(t, Config{Dir: dir, Fault: func(step string) error {
		if step == "meta" && metaSteps.Add(1) == 1 {
			close(blocked)
			<-release
		}
		return nil
	}})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock) // before newCache's Close, which waits for the commit

	const n = 8
	objs := make([][]byte, n+1)
	ups := make([]*upstream, n+1)
	for i := range objs {
		objs[i] = randBytes(70<<10+i, uint64(700+i))
		ups[i] = staticUpstream(objs[i])
	}
	if got := fillAndRead(t, c, keyOf(objs[0]), specFor(objs[0], ups[0])); !bytes.Equal(got, objs[0]) {
		t.Fatal("first fill: bytes differ")
	}
	<-blocked // objs[0]'s batch is between its barrier and its renames

	if _, err := c.Get(keyOf(objs[0])); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of an uncommitted fill = %v, want ErrNotFound", err)
	}
	s, err := c.Fill(keyOf(objs[0]), specFor(objs[0], ups[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Joined, not refetched: every byte is here and verified, so it is a
	// hit (no upstream fetch), not a collapsed request.
	if got, err := readAll(s); err != nil || !bytes.Equal(got, objs[0]) || !s.Hit() || s.Collapsed() {
		t.Errorf("Fill of an uncommitted key: %d bytes, %v, hit %v, collapsed %v", len(got), err, s.Hit(), s.Collapsed())
	}
	s.Close()

	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			s, err := c.Fill(keyOf(objs[i]), specFor(objs[i], ups[i]))
			if err != nil {
				t.Error(err)
				return
			}
			defer s.Close()
			if got, err := readAll(s); err != nil || !bytes.Equal(got, objs[i]) {
				t.Errorf("fill %d while the committer is busy: %d bytes, %v", i, len(got), err)
			}
		})
	}
	wg.Wait() // every reader had its bytes with no commit done
	for {     // until the n fills queued for the committer (no clock: yield)
		c.cmu.Lock()
		q := len(c.queue)
		c.cmu.Unlock()
		if q == n {
			break
		}
		runtime.Gosched()
	}
	for i := 1; i <= n; i++ {
		if _, err := c.Get(keyOf(objs[i])); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%d) before its commit = %v, want ErrNotFound", i, err)
		}
	}
	unblock()
	c.wg.Wait()
	if got := metaSteps.Load(); got != 2 {
		t.Errorf("commit batches = %d, want 2 (the first fill, then the %d queued meanwhile)", got, n)
	}
	for i := range objs {
		if n := ups[i].fetches.Load(); n != 1 {
			t.Errorf("object %d: %d fetches, want 1", i, n)
		}
	}
	if st := c.Stats(); st.Entries != n+1 || st.Collapsed != 1 || st.DiskErrors != 0 || st.FillsInFlight != 0 {
		t.Errorf("Stats = %+v", st)
	}
	assertEmptyTmp(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2 := newCache(t, Config{Dir: dir})
	for i, b := range objs {
		o, err := c2.Get(keyOf(b))
		if err != nil {
			t.Errorf("Get(%d) after restart: %v", i, err)
			continue
		}
		got, err := io.ReadAll(io.NewSectionReader(o, 0, o.Size()))
		if err != nil || !bytes.Equal(got, b) {
			t.Errorf("entry %d after restart: %d bytes, %v", i, len(got), err)
		}
		o.Close()
	}
}

// TestCommitFailureKeepsNothing fails each step of a commit once: the
// readers still get every byte, nothing is kept or left behind, and the
// next fill of the key is kept.
func TestCommitFailureKeepsNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		step      string
		writeback bool // the step reports a writeback error instead of failing
	}{
		{"prepare", "sync", false},
		{"meta renames", "meta", false},
		{"data renames", "rename", false},
		{"writeback error during the fill", "sync", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c *Cache
			var fired atomic.Bool
			c = newCache(t, Config{Fault: func(step string) error {
				if step != tc.step || fired.Swap(true) {
					return nil
				}
				if tc.writeback {
					c.fsErrors.Add(1) // as syncfs does on an error it reports
					return nil
				}
				return syscall.EIO
			}})
			b := randBytes(100<<10, 41)
			key := keyOf(b)
			u := staticUpstream(b)
			if got := fillAndRead(t, c, key, specFor(b, u)); !bytes.Equal(got, b) {
				t.Fatalf("reader of a fill whose commit fails: %d bytes", len(got))
			}
			c.wg.Wait()
			if _, err := c.Get(key); !errors.Is(err, ErrNotFound) {
				t.Errorf("Get after a failed commit = %v, want ErrNotFound", err)
			}
			if st := c.Stats(); st.DiskErrors != 1 || st.FillErrors != 0 || st.Entries != 0 || st.BytesUsed != 0 || st.FillsInFlight != 0 {
				t.Errorf("Stats = %+v", st)
			}
			if files := objectFiles(t, c); len(files) != 0 {
				t.Errorf("a failed commit left %v", files)
			}
			assertEmptyTmp(t, c)
			if got := fillAndRead(t, c, key, specFor(b, u)); !bytes.Equal(got, b) {
				t.Fatal("refill differs")
			}
			c.wg.Wait()
			if o, err := c.Get(key); err != nil {
				t.Errorf("Get after the refill: %v", err)
			} else {
				o.Close()
			}
			if n := u.fetches.Load(); n != 2 {
				t.Errorf("fetches = %d, want 2", n)
			}
		})
	}
}
