package cache

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
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

// countSteps returns a Fault hook counting the calls of each step, and the
// counter.
func countSteps() (func(string) error, func(string) int64) {
	var mu sync.Mutex
	n := map[string]int64{}
	return func(step string) error {
			mu.Lock()
			n[step]++
			mu.Unlock()
			return nil
		}, func(step string) int64 {
			mu.Lock()
			defer mu.Unlock()
			return n[step]
		}
}

// dirtyCount is the number of entries no checkpoint covered yet.
func dirtyCount(c *Cache) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, i := range c.idx {
		if c.ents[i].dirty != 0 {
			n++
		}
	}
	return n
}

// TestCommitAtOnceDurableAtCheckpoint: a verified fill is an entry as soon
// as its fill ends, with no barrier of its own; one checkpoint then makes
// every entry so far durable, and the next New keeps them.
func TestCommitAtOnceDurableAtCheckpoint(t *testing.T) {
	fault, steps := countSteps()
	dir := t.TempDir()
	c := newCache(t, Config{Dir: dir, SyncInterval: time.Hour, Fault: fault})
	const n = 8
	objs := make([][]byte, n)
	for i := range objs {
		objs[i] = randBytes(70<<10+i, uint64(700+i))
		if got := fillAndRead(t, c, keyOf(objs[i]), specFor(objs[i], staticUpstream(objs[i]))); !bytes.Equal(got, objs[i]) {
			t.Fatalf("fill %d: bytes differ", i)
		}
	}
	c.wg.Wait() // the fill goroutines, which committed
	for i, b := range objs {
		o, err := c.Get(keyOf(b))
		if err != nil {
			t.Fatalf("Get(%d) right after its fill: %v", i, err)
		}
		o.Close()
	}
	if got := steps("checkpoint"); got != 0 {
		t.Errorf("checkpoints before SyncInterval = %d, want 0", got)
	}
	if got := dirtyCount(c); got != n {
		t.Errorf("dirty entries = %d, want %d", got, n)
	}
	if err := c.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if got := dirtyCount(c); got != 0 {
		t.Errorf("dirty entries after a checkpoint = %d, want 0", got)
	}
	if got := steps("checkpoint"); got != 1 {
		t.Errorf("checkpoints = %d, want 1 for all %d entries", got, n)
	}
	if err := c.checkpoint(); err != nil || steps("checkpoint") != 1 {
		t.Errorf("a checkpoint with nothing dirty: %v, %d barriers", err, steps("checkpoint"))
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

// TestCheckpointRunsBySyncInterval: the armed timer makes the entries
// durable by itself.
func TestCheckpointRunsBySyncInterval(t *testing.T) {
	done := make(chan struct{}, 1)
	c := newCache(t, Config{SyncInterval: time.Millisecond, Fault: func(step string) error {
		if step == "checkpoint" {
			select {
			case done <- struct{}{}:
			default:
			}
		}
		return nil
	}})
	b := randBytes(10<<10, 5)
	fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b)))
	<-done
	c.ckWG.Wait()
	if got := dirtyCount(c); got != 0 {
		t.Errorf("dirty entries after the timed checkpoint = %d, want 0", got)
	}
}

// TestCheckpointFailureRemovesDirty: a barrier that fails (EIO, a
// writeback error) may have lost any dirty entry's bytes: none is kept.
// Entries an earlier checkpoint covered stay.
func TestCheckpointFailureRemovesDirty(t *testing.T) {
	var fail atomic.Bool
	c := newCache(t, Config{SyncInterval: time.Hour, Fault: func(step string) error {
		if step == "checkpoint" && fail.Load() {
			return syscall.EIO
		}
		return nil
	}})
	clean, dirty := randBytes(30<<10, 6), randBytes(30<<10, 7)
	fillAndRead(t, c, keyOf(clean), specFor(clean, staticUpstream(clean)))
	c.wg.Wait()
	if err := c.checkpoint(); err != nil {
		t.Fatal(err)
	}
	fillAndRead(t, c, keyOf(dirty), specFor(dirty, staticUpstream(dirty)))
	c.wg.Wait()
	fail.Store(true)
	if err := c.checkpoint(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("checkpoint = %v, want EIO", err)
	}
	if _, err := c.Get(keyOf(dirty)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a dirty entry after a failed checkpoint = %v, want ErrNotFound", err)
	}
	o, err := c.Get(keyOf(clean))
	if err != nil {
		t.Fatalf("Get of a durable entry after a failed checkpoint: %v", err)
	}
	o.Close()
	for _, name := range objectFiles(t, c) {
		if k, _, _ := parseName(name); k == keyOf(dirty) {
			t.Errorf("a failed checkpoint left %s", name)
		}
	}
}

// TestRefillAfterEvictionSyncsFirst: files of a key whose durable entry
// was evicted change again only after the removal is durable (else a
// power loss could pair the durable index record with new, torn files).
func TestRefillAfterEvictionSyncsFirst(t *testing.T) {
	fault, steps := countSteps()
	a, b := randBytes(60<<10, 8), randBytes(60<<10, 9)
	c := newCache(t, Config{MaxBytes: 100 << 10, SyncInterval: time.Hour, Fault: fault})
	ua := staticUpstream(a)
	fillAndRead(t, c, keyOf(a), specFor(a, ua))
	c.wg.Wait()
	if err := c.checkpoint(); err != nil {
		t.Fatal(err)
	}
	fillAndRead(t, c, keyOf(b), specFor(b, staticUpstream(b))) // evicts a: a tombstone
	c.wg.Wait()
	if _, err := c.Get(keyOf(a)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(a) after its eviction = %v", err)
	}
	before := steps("checkpoint")
	if got := fillAndRead(t, c, keyOf(a), specFor(a, ua)); !bytes.Equal(got, a) {
		t.Fatal("refill differs")
	}
	c.wg.Wait()
	if got := steps("checkpoint") - before; got != 1 {
		t.Errorf("checkpoints before the refill's commit = %d, want 1", got)
	}
	o, err := c.Get(keyOf(a))
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
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
		{"meta write", "meta", false},
		{"data rename", "rename", false},
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
