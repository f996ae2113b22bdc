package layout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Lock takes the root's exclusive publish lock, an flock(2) on ROOT/.lock, so
// two publishers (local pkgpublish runs, the master's publish API) never
// interleave a Commit or a GC. It waits until ctx is done, then fails with an
// error wrapping ErrLocked that names the holder ("held by pid N since T").
// The lock dies with its process, so a crashed publisher never leaves it
// held. unlock releases it; call it exactly once. Lock is not reentrant: a
// second Lock of the same root waits, also in the same process. Once it
// holds the lock, Lock runs Recover, so that after a power loss HasObject
// never reports an object a dead writer left partial to the holder.
func (r *Root) Lock(ctx context.Context) (unlock func() error, err error) {
	path := filepath.Join(r.Dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	// Poll a non-blocking flock: a blocking flock(2) cannot be interrupted
	// when ctx is done.
	wait := time.Millisecond
	for {
		ok, err := tryLock(f)
		if err != nil {
			_ = f.Close() // the flock error is the one to report
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if ok {
			break
		}
		if err := faultHook("lock-wait"); err != nil {
			_ = f.Close() // never locked: nothing to release
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			holder := readHolder(f)
			_ = f.Close() // never locked: nothing to release
			return nil, fmt.Errorf("%w: %s held by %s (%v)", ErrLocked, path, holder, context.Cause(ctx))
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
	// The holder is written into the locked file itself, in place: replacing
	// the file (atomicfile) would move the name to an inode nobody locks.
	info := fmt.Sprintf("pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0) // only the error message of others uses it
	}
	unlock = func() error {
		_ = f.Truncate(0) // stale holder text would only mislead an error message
		err := unlockFile(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("unlock %s: %w", path, err)
		}
		return nil
	}
	// Objects a writer that died (a power loss) may have left partial are
	// checked before the holder can ask HasObject about them. The check
	// is bounded work that must not restart from scratch on every retry
	// of a caller with a short ctx (the lock wait).
	if _, err := r.Recover(context.WithoutCancel(ctx)); err != nil {
		return nil, errors.Join(fmt.Errorf("lock: %w", err), unlock())
	}
	return unlock, nil
}

// readHolder returns the holder text of a lock file, or "an unknown process".
func readHolder(f *os.File) string {
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, 0)
	s := strings.TrimSpace(string(buf[:n]))
	if s == "" {
		return "an unknown process"
	}
	return s
}
