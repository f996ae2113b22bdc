// Package setid names package sets: set names (FreeBSD:14:amd64/latest),
// set IDs (UTC timestamps YYYYMMDDTHHMMSSZ, strictly increasing per set) and
// the SETS file that lists the live ID of every set. It refuses rollbacks.
package setid

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Layout is the time layout of a set ID.
const Layout = "20060102T150405Z"

// ID is a set ID: a UTC instant at one-second resolution. The zero ID means
// "none" (e.g. the previous ID of a set's first publish).
type ID struct {
	unix int64 // seconds since the epoch; 0 is "none"
}

// ErrSyntax is returned for an ID that is not YYYYMMDDTHHMMSSZ.
var ErrSyntax = errors.New("setid: not a set ID (want UTC YYYYMMDDTHHMMSSZ)")

// ErrRollback is returned when a set ID is not newer than the one held.
var ErrRollback = errors.New("set ID not newer than the live one (rollback refused)")

// Parse parses a set ID. Only the canonical spelling is accepted.
func Parse(s string) (ID, error) {
	if !idShaped(s) {
		return ID{}, ErrSyntax
	}
	t, err := time.Parse(Layout, s)
	if err != nil || t.Format(Layout) != s || t.Unix() <= 0 {
		return ID{}, ErrSyntax
	}
	return ID{unix: t.Unix()}, nil
}

// idShaped reports whether s has the shape of Layout (digits, a T at 8, a
// Z at the end): a cheap test before time.Parse, which allocates an error
// for every other string (route parsing asks it of each set-name segment).
func idShaped(s string) bool {
	if len(s) != len(Layout) || s[8] != 'T' || s[15] != 'Z' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if i != 8 && i != 15 && (s[i] < '0' || s[i] > '9') {
			return false
		}
	}
	return true
}

// FromTime returns the ID of t, truncated to the second. Only times from
// 1970-01-01T00:00:01Z to 9999-12-31T23:59:59Z give IDs that Parse accepts.
func FromTime(t time.Time) ID { return ID{unix: t.Unix()} }

// Next returns the ID for a set published at now whose previous ID is prev:
// now, or one second after prev if the clock has not moved past it, so IDs
// only ever increase even if the build host's clock steps back. (Past
// 9999-12-31T23:59:59Z the result no longer parses; no clock gets there.)
func Next(prev ID, now time.Time) ID {
	id := FromTime(now)
	if !id.After(prev) {
		id = ID{unix: prev.unix + 1}
	}
	return id
}

// String returns the canonical spelling, or "" for the zero ID.
func (id ID) String() string {
	if id.IsZero() {
		return ""
	}
	return id.Time().Format(Layout)
}

// Time returns the ID as a UTC time.
func (id ID) Time() time.Time { return time.Unix(id.unix, 0).UTC() }

// IsZero reports whether id is the zero ("none") ID.
func (id ID) IsZero() bool { return id.unix == 0 }

// After reports whether id is strictly newer than o.
func (id ID) After(o ID) bool { return id.unix > o.unix }

// Compare returns -1, 0 or +1 as id is older than, equal to or newer than o.
func (id ID) Compare(o ID) int {
	switch {
	case id.unix < o.unix:
		return -1
	case id.unix > o.unix:
		return 1
	}
	return 0
}

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; "" is the zero ID.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// CheckAdvance returns an error wrapping ErrRollback unless next is strictly
// newer than held. Every place that switches a set calls it.
func CheckAdvance(held, next ID) error {
	if !next.After(held) {
		return fmt.Errorf("%w: have %s, offered %s", ErrRollback, orNone(held), orNone(next))
	}
	return nil
}

// orNone returns id's spelling, or "none" for the zero ID.
func orNone(id ID) string {
	if id.IsZero() {
		return "none"
	}
	return id.String()
}

// MaxNameLen bounds a set name.
const MaxNameLen = 200

// ErrBadName is wrapped by ValidateName's errors.
var ErrBadName = errors.New("invalid set name")

// CurrentLink is the name of the symlink to a set's live ID in a set's
// directory on the master; no segment of a set name but the first may be it.
const CurrentLink = "current"

// ValidateName checks a set name: one or more segments of [A-Za-z0-9._:+-]
// joined by "/", no segment "." or "..", none starting with "." (so a set can
// never alias .pkgcdn or a temp file), at most MaxNameLen bytes. A segment
// after the first may be neither "current" nor a set ID: on the master the
// set "a" is the directory sets/a/ holding a/current and a/<ID>, so the sets
// "a/current" and "a/<ID>" would collide with it.
func ValidateName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: must be 1 to %d bytes", ErrBadName, name, MaxNameLen)
	}
	for i, rest, more := 0, name, true; more; i++ {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		if i > 0 && seg == CurrentLink {
			return fmt.Errorf("%w %q: segment %q is reserved", ErrBadName, name, seg)
		}
		if _, err := Parse(seg); i > 0 && err == nil {
			return fmt.Errorf("%w %q: segment %q is a set ID", ErrBadName, name, seg)
		}
		if seg == "" {
			return fmt.Errorf("%w %q: empty segment", ErrBadName, name)
		}
		if seg[0] == '.' {
			return fmt.Errorf("%w %q: segment %q starts with a dot", ErrBadName, name, seg)
		}
		for i := 0; i < len(seg); i++ {
			if !nameByte(seg[i]) {
				return fmt.Errorf("%w %q: byte %q not in [A-Za-z0-9._:+-]", ErrBadName, name, seg[i])
			}
		}
	}
	return nil
}

func nameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == ':' || c == '+' || c == '-'
}
