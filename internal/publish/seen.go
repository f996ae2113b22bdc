package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// The seen-IDs file (Config.SeenFile) is this host's memory of each
// master's verified SETS: per master URL and set, the newest set ID seen
// there. Signatures prove who made a SETS, not when: a master could offer
// an older one, validly signed, to have a publish built on an old set (its
// Previous and Modified times) or an old set refreshed. A SETS that names
// an older ID for a set, or lacks one, than the file remembers is refused.
//
// Writers merge by keeping the newer ID of each set, so two publishers on
// one host at once may lose one's update, which only makes the memory
// older, never refuses a genuine SETS.
type seenIDs map[string]map[string]setid.ID // master URL → set → newest ID

// maxSeenBytes bounds the file.
const maxSeenBytes = 4 << 20

// DefaultSeenPath returns the seen-IDs file of this user:
// $XDG_CACHE_HOME/pkgcdn/seen-ids.json, or ~/.cache/pkgcdn/seen-ids.json.
func DefaultSeenPath() (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", fmt.Errorf("seen-IDs file location: %w", err)
	}
	return filepath.Join(dir, "seen-ids.json"), nil
}

// loadSeen reads the file at path; a missing one is empty.
func loadSeen(path string) (seenIDs, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return seenIDs{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("seen-IDs file: %w", err)
	}
	if len(b) > maxSeenBytes {
		return nil, fmt.Errorf("seen-IDs file %s: over %d bytes", path, maxSeenBytes)
	}
	s := seenIDs{}
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("seen-IDs file %s: %w (remove it to start afresh)", path, err)
	}
	return s, nil
}

// check refuses sets, the verified SETS of master, if it names an older ID
// for a set, or lacks a set, than seen remembers there.
func (s seenIDs) check(master, path string, sets setid.Sets) error {
	for set, id := range s[master] {
		e, ok := sets.Lookup(set)
		switch {
		case !ok:
			return fmt.Errorf("%w: the master's SETS lacks set %s, seen there at %s: an older SETS replayed, or a master restored from a backup (if so on purpose, remove %s)",
				setid.ErrRollback, set, id, path)
		case id.After(e.ID):
			return fmt.Errorf("%w: the master's SETS names %s %s, older than %s seen there before: an older SETS replayed, or a master restored from a backup (if so on purpose, remove %s)",
				setid.ErrRollback, set, e.ID, id, path)
		}
	}
	return nil
}

// recordSeen merges sets, verified on master, into the file at path.
func recordSeen(path, master string, sets setid.Sets) error {
	s, err := loadSeen(path)
	if err != nil {
		return err
	}
	return s.record(path, master, sets)
}

// record merges sets, verified on master, into s and, if that changed it,
// writes s to the file at path.
func (s seenIDs) record(path, master string, sets setid.Sets) error {
	m := s[master]
	if m == nil {
		m = map[string]setid.ID{}
		s[master] = m
	}
	changed := false
	for _, e := range sets {
		if e.ID.After(m[e.Set]) {
			m[e.Set], changed = e.ID, true
		}
	}
	if !changed {
		return nil
	}
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("seen-IDs file: %w", err)
	}
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("seen-IDs file: %w", err)
	}
	return nil
}
