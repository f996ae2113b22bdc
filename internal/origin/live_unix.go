//go:build linux || freebsd

package origin

import (
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
)

// liveDirs reads the `current` link of each set on every request (a
// local `pkgpublish --root` swaps it from another process, and a request
// must be served from the set it names at that moment), but cheaply: by
// readlinkat(2) on a descriptor of the set's directory, kept open, which
// resolves one name instead of the whole path under the root, allocates
// nothing, and skips parsing a target already seen. Anything unusual
// (an error, a target that is no set ID, a set not seen yet) goes through
// layout.Root.Live, which also opens the set's directory for next time.
//
// A descriptor follows its directory: if an operator replaced a set's
// directory (layout never does), it would still see the old one, so
// revalidate, called at every refresh, drops a descriptor whose directory
// is no longer the one at the set's path. It is safe for concurrent use.
type liveDirs struct {
	root *layout.Root

	mu   sync.Mutex                          // serializes changes to dirs
	dirs atomic.Pointer[map[string]*liveDir] // copy on write
}

type liveDir struct {
	path string // the set's directory

	mu     sync.RWMutex // read-held while fd is used; fd is closed under the write lock
	fd     int          // -1 once closed
	target atomic.Pointer[liveTarget]
}

// liveTarget is the last target read and its ID.
type liveTarget struct {
	target string
	id     setid.ID
}

func newLiveDirs(root *layout.Root) *liveDirs {
	l := &liveDirs{root: root}
	l.dirs.Store(&map[string]*liveDir{})
	return l
}

// live returns the live ID of set, read now.
func (l *liveDirs) live(set string) (setid.ID, error) {
	if d := (*l.dirs.Load())[set]; d != nil {
		if id, ok := d.read(); ok {
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

func (d *liveDir) read() (setid.ID, bool) {
	var buf [64]byte // a set ID is 16 bytes
	d.mu.RLock()
	n := -1
	if d.fd >= 0 {
		var err error
		if n, err = unix.Readlinkat(d.fd, setid.CurrentLink, buf[:]); err != nil {
			n = -1
		}
	}
	d.mu.RUnlock()
	if n < 0 || n == len(buf) {
		return setid.ID{}, false
	}
	if t := d.target.Load(); t != nil && t.target == string(buf[:n]) {
		return t.id, true
	}
	id, err := setid.Parse(string(buf[:n]))
	if err != nil {
		return setid.ID{}, false
	}
	d.target.Store(&liveTarget{target: string(buf[:n]), id: id})
	return id, true
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
