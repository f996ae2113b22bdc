//go:build linux || freebsd

package origin

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
)

// liveDirs reads the live ID of a set on every request: a local
// `pkgpublish --root` swaps `current` from another process, and a request
// must be served from the set it names at that moment. Reading the link
// (readlink of the whole path under the root, then parsing) was one of the
// three system calls of a small file served from memory; this does it
// with one fstat(2) of the set's directory, through a descriptor kept
// open, in the steady state.
//
// Why fstat is enough. A rename into a directory updates the directory's
// modification and change times (POSIX, rename()): every swap of
// `current` does. So while both times are those seen when the link was
// last read, the link is the one read. Two swaps within one tick of the
// file system's clock could leave equal times, so a reading is trusted
// only once the directory's times are older than liveSettle when it was
// read: any later swap then stamps a later time. Only a backwards step of
// the system clock could stamp an old time again, and even then a reading
// is trusted for at most liveRecheck before the link is read again.
// Until a change settles, every request reads the link (readlinkat, one
// name from the directory's descriptor). Anything unusual (an error, a
// target that is no set ID, a set not seen yet) goes through
// layout.Root.Live, which also opens the set's directory for next time.
//
// A descriptor follows its directory: if an operator replaced a set's
// directory (layout never does), it would still see the old one, so
// revalidate, called at every refresh and before a request retries,
// drops a descriptor whose directory is no longer the one at the set's
// path. It is safe for concurrent use.
type liveDirs struct {
	root *layout.Root
	now  func() time.Time // the clock the directory's times are compared with

	mu   sync.Mutex                          // serializes changes to dirs
	dirs atomic.Pointer[map[string]*liveDir] // copy on write
}

type liveDir struct {
	path string // the set's directory

	mu     sync.RWMutex // read-held while fd is used; fd is closed under the write lock
	fd     int          // -1 once closed
	target atomic.Pointer[liveTarget]
	links  atomic.Int64 // readlinkat calls (for tests)
}

// Trust rules of a reading of `current` (see liveDirs).
const (
	liveSettle  = 3 * time.Second // directory times older than this: no swap can stamp them again
	liveRecheck = time.Second     // a trusted reading is read again after this anyway
)

// liveTarget is the last reading of `current`: its target, its ID, the
// directory's times just before, and until when it may be trusted without
// reading the link (zero: not at all, the directory changed lately).
type liveTarget struct {
	target       string
	id           setid.ID
	mtime, ctime unix.Timespec
	until        int64 // unix nanoseconds
}

func newLiveDirs(root *layout.Root) *liveDirs {
	l := &liveDirs{root: root, now: time.Now}
	l.dirs.Store(&map[string]*liveDir{})
	return l
}

// live returns the live ID of set, read now.
func (l *liveDirs) live(set string) (setid.ID, error) {
	if d := (*l.dirs.Load())[set]; d != nil {
		if id, ok := l.read(d); ok {
			return id, nil
		}
	}
	id, err := l.root.Live(set) // validates set; the error to report
	if err == nil {
		l.open(set, id)
	}
	return id, err
}

// fresh is live after revalidate: for a request whose set turned out to
// be gone, to rule out a descriptor of a replaced directory.
func (l *liveDirs) fresh(set string) (setid.ID, error) {
	l.revalidate(set)
	return l.live(set)
}

func (l *liveDirs) read(d *liveDir) (setid.ID, bool) {
	now := l.now().UnixNano()
	var st unix.Stat_t
	var buf [64]byte // a set ID is 16 bytes
	n := -1
	last := d.target.Load()
	d.mu.RLock()
	// The directory's times first, then the link: a swap in between is
	// then seen by the next request (times changed), never hidden.
	if d.fd >= 0 && unix.Fstat(d.fd, &st) == nil {
		if last != nil && now < last.until && st.Mtim == last.mtime && st.Ctim == last.ctime {
			d.mu.RUnlock()
			return last.id, true
		}
		var err error
		if n, err = unix.Readlinkat(d.fd, setid.CurrentLink, buf[:]); err != nil {
			n = -1
		}
		d.links.Add(1)
	}
	d.mu.RUnlock()
	if n < 0 || n == len(buf) {
		return setid.ID{}, false
	}
	t := &liveTarget{mtime: st.Mtim, ctime: st.Ctim}
	if last != nil && last.target == string(buf[:n]) {
		t.target, t.id = last.target, last.id
	} else {
		id, err := setid.Parse(string(buf[:n]))
		if err != nil {
			return setid.ID{}, false
		}
		t.target, t.id = string(buf[:n]), id
	}
	if settle := now - int64(liveSettle); st.Mtim.Nano() < settle && st.Ctim.Nano() < settle {
		t.until = now + int64(liveRecheck)
	}
	d.target.Store(t)
	return t.id, true
}

// open keeps a descriptor of the directory of set (whose live ID is id)
// if there is none yet. A failure only means the slow path next time.
func (l *liveDirs) open(set string, id setid.ID) {
	if (*l.dirs.Load())[set] != nil {
		return
	}
	dir := l.root.SetDir(set, id) // "" for an invalid name: Live refused it already
	if dir == "" {
		return
	}
	path := filepath.Dir(dir)
	l.mu.Lock()
	defer l.mu.Unlock()
	old := *l.dirs.Load()
	if old[set] != nil {
		return
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	m := make(map[string]*liveDir, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[set] = &liveDir{path: path, fd: fd}
	l.dirs.Store(&m)
}

// revalidate drops the descriptor of set if its directory is no longer
// the one at its path (replaced, or removed).
func (l *liveDirs) revalidate(set string) {
	d := (*l.dirs.Load())[set]
	if d == nil {
		return
	}
	var byPath, byFD unix.Stat_t
	d.mu.RLock()
	err := unix.Stat(d.path, &byPath)
	if err == nil {
		err = unix.Fstat(d.fd, &byFD)
	}
	d.mu.RUnlock()
	if err == nil && byPath.Dev == byFD.Dev && byPath.Ino == byFD.Ino {
		return
	}
	l.mu.Lock()
	old := *l.dirs.Load()
	m := make(map[string]*liveDir, len(old))
	for k, v := range old {
		if k != set {
			m[k] = v
		}
	}
	l.dirs.Store(&m)
	l.mu.Unlock()
	d.mu.Lock()
	_ = unix.Close(d.fd) // read-only directory: nothing to lose
	d.fd = -1
	d.mu.Unlock()
}
