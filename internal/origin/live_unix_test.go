//go:build linux || freebsd

package origin

import (
	"testing"
	"time"
)

// TestLiveDirsTrustRules: the link is read again whenever the directory's
// times changed (a swap), after liveRecheck, and on every request while
// the directory changed less than liveSettle ago; otherwise one fstat is
// enough.
func TestLiveDirsTrustRules(t *testing.T) {
	f := newFixture(t, nil)
	m1 := f.publish(set, map[string]string{"a": "1"})
	l := newLiveDirs(f.root)
	now := time.Now()
	l.now = func() time.Time { return now }
	links := func() int64 {
		d := (*l.dirs.Load())[set]
		if d == nil {
			return -1
		}
		return d.links.Load()
	}
	step := func(name string, want string, wantLinks int64) {
		t.Helper()
		id, err := l.live(set)
		if err != nil || id.String() != want {
			t.Fatalf("%s: live = %s, %v, want %s", name, id, err, want)
		}
		if got := links(); got != wantLinks {
			t.Errorf("%s: %d readlinkat calls so far, want %d", name, got, wantLinks)
		}
	}
	step("first: through layout, opens the directory", m1.ID.String(), 0)
	step("just published: not settled, read", m1.ID.String(), 1)
	step("still not settled: read", m1.ID.String(), 2)
	now = now.Add(liveSettle + time.Second)
	step("settled: read once more, then trusted", m1.ID.String(), 3)
	step("trusted: fstat only", m1.ID.String(), 3)
	step("trusted: fstat only, again", m1.ID.String(), 3)
	now = now.Add(liveRecheck)
	step("recheck due: read", m1.ID.String(), 4)
	step("trusted again", m1.ID.String(), 4)

	m2 := f.publishLocal(set, map[string]string{"a": "2"})
	step("swapped: the times changed, read", m2.ID.String(), 5)
	step("swapped: still trusted, as times are old to this clock", m2.ID.String(), 5)
	now = time.Now() // the swap is fresh again: not settled
	m3 := f.publishLocal(set, map[string]string{"a": "3"})
	step("swapped, fresh", m3.ID.String(), 6)
	step("fresh: read every time", m3.ID.String(), 7)
}
