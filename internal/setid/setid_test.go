package setid

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustParse(t testing.TB, s string) ID {
	t.Helper()
	id, err := Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q) = %v", s, err)
	}
	return id
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"canonical", "20261125T031500Z", true},
		{"first second after the epoch", "19700101T000001Z", true},
		{"last representable", "99991231T235959Z", true},
		{"leap day", "20240229T120000Z", true},
		{"epoch itself is the zero ID, refused", "19700101T000000Z", false},
		{"before the epoch", "19691231T235959Z", false},
		{"empty", "", false},
		{"lower-case t", "20261125t031500Z", false},
		{"lower-case z", "20261125T031500z", false},
		{"no Z", "20261125T031500", false},
		{"offset instead of Z", "20261125T031500+0000", false},
		{"RFC 3339", "2026-11-25T03:15:00Z", false},
		{"fractional seconds", "20261125T031500.5Z", false},
		{"month 13", "20261325T031500Z", false},
		{"day 32", "20261132T031500Z", false},
		{"Feb 30 normalised by nobody", "20260230T000000Z", false},
		{"not a leap year", "20250229T000000Z", false},
		{"hour 24", "20261125T240000Z", false},
		{"second 60", "20261125T235960Z", false},
		{"space padding", "2026112 T031500Z", false},
		{"sign", "+0261125T031500Z", false},
		{"trailing newline", "20261125T031500Z\n", false},
		{"leading space", " 20261125T031500Z", false},
		{"unicode digit", "２0261125T031500Z"[:16], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := Parse(tt.in)
			if !tt.ok {
				if !errors.Is(err, ErrSyntax) || !id.IsZero() {
					t.Errorf("Parse(%q) = %v, %v, want zero, ErrSyntax", tt.in, id, err)
				}
				return
			}
			if err != nil || id.String() != tt.in {
				t.Errorf("Parse(%q) = %v, %v, want %s, nil", tt.in, id, err, tt.in)
			}
		})
	}
}

func TestIDMethods(t *testing.T) {
	a := mustParse(t, "20261124T000000Z")
	b := mustParse(t, "20261125T000000Z")
	if !b.After(a) || a.After(b) || a.After(a) {
		t.Errorf("After: %v.After(%v) = %v, %v.After(%v) = %v", b, a, b.After(a), a, b, a.After(b))
	}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 {
		t.Errorf("Compare = %d %d %d, want -1 1 0", a.Compare(b), b.Compare(a), a.Compare(a))
	}
	if got := a.Time(); !got.Equal(time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)) || got.Location() != time.UTC {
		t.Errorf("Time() = %v, want 2026-11-24 00:00:00 UTC", got)
	}
	if got := FromTime(time.Date(2026, 11, 24, 1, 0, 0, 999, time.FixedZone("x", 3600))); got != a {
		t.Errorf("FromTime(01:00:00.000000999+01:00) = %v, want %v", got, a)
	}
	var zero ID
	if !zero.IsZero() || zero.String() != "" || a.IsZero() {
		t.Errorf("zero ID: IsZero %v String %q", zero.IsZero(), zero.String())
	}
	for _, id := range []ID{zero, a} {
		txt, err := id.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got ID
		if err := got.UnmarshalText(txt); err != nil || got != id {
			t.Errorf("UnmarshalText(%q) = %v, %v, want %v", txt, got, err, id)
		}
	}
	var got ID
	if err := got.UnmarshalText([]byte("yesterday")); !errors.Is(err, ErrSyntax) {
		t.Errorf("UnmarshalText(%q) = %v, want ErrSyntax", "yesterday", err)
	}
}

func TestNext(t *testing.T) {
	prev := mustParse(t, "20261125T031500Z")
	tests := []struct {
		name string
		prev ID
		now  time.Time
		want string
	}{
		{"first set takes now", ID{}, time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC), "20261125T031500Z"},
		{"clock ahead takes now", prev, time.Date(2026, 11, 26, 3, 15, 0, 0, time.UTC), "20261126T031500Z"},
		{"sub-second is truncated", prev, time.Date(2026, 11, 26, 3, 15, 0, 999999999, time.UTC), "20261126T031500Z"},
		{"same second steps one past prev", prev, prev.Time(), "20261125T031501Z"},
		{"same second plus a fraction steps one past prev", prev, prev.Time().Add(500 * time.Millisecond), "20261125T031501Z"},
		{"clock stepped back a day", prev, prev.Time().Add(-24 * time.Hour), "20261125T031501Z"},
		{"clock before the epoch", ID{}, time.Unix(-100, 0), "19700101T000001Z"},
		{"non-UTC now", prev, time.Date(2026, 11, 26, 4, 15, 0, 0, time.FixedZone("CET", 3600)), "20261126T031500Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Next(tt.prev, tt.now)
			if got.String() != tt.want {
				t.Errorf("Next(%v, %v) = %v, want %v", tt.prev, tt.now, got, tt.want)
			}
			if !got.After(tt.prev) {
				t.Errorf("Next(%v, %v) = %v, not after prev", tt.prev, tt.now, got)
			}
		})
	}
}

func TestNextMonotonicWhenClockStepsBack(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	// A clock that jumps around: forwards, backwards, stands still.
	offsets := []time.Duration{0, time.Hour, -time.Hour, 0, 0, 2 * time.Hour, time.Second, -48 * time.Hour, 3 * time.Hour}
	var prev ID
	for i, off := range offsets {
		id := Next(prev, start.Add(off))
		if err := CheckAdvance(prev, id); err != nil {
			t.Errorf("step %d: Next(%v, now%+v) = %v: %v", i, prev, off, id, err)
		}
		if _, err := Parse(id.String()); err != nil {
			t.Errorf("step %d: Next = %v does not parse: %v", i, id, err)
		}
		prev = id
	}
}

func TestCheckAdvance(t *testing.T) {
	a := mustParse(t, "20261124T000000Z")
	b := mustParse(t, "20261125T000000Z")
	tests := []struct {
		name       string
		held, next ID
		rollback   bool
	}{
		{"newer accepted", a, b, false},
		{"first set accepted", ID{}, a, false},
		{"same ID refused", b, b, true},
		{"older refused", b, a, true},
		{"zero offered refused", a, ID{}, true},
		{"zero over zero refused", ID{}, ID{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckAdvance(tt.held, tt.next)
			if tt.rollback != errors.Is(err, ErrRollback) || (!tt.rollback && err != nil) {
				t.Errorf("CheckAdvance(%v, %v) = %v, want rollback %v", tt.held, tt.next, err, tt.rollback)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"FreeBSD set", "FreeBSD:14:amd64/latest", true},
		{"one segment", "quarterly", true},
		{"all allowed bytes", "Az09._:+-/x", true},
		{"inner dots", "a..b/c.d", true},
		{"longest", strings.Repeat("a", MaxNameLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", MaxNameLen+1), false},
		{"dot segment", "a/./b", false},
		{"dot-dot segment", "a/../b", false},
		{"dot-dot alone", "..", false},
		{"leading dot-dot", "../etc", false},
		{"leading dot", ".pkgcdn", false},
		{"hidden segment", "a/.git", false},
		{"temp file name", ".tmp-x", false},
		{"absolute", "/etc", false},
		{"trailing slash", "a/", false},
		{"double slash", "a//b", false},
		{"backslash", `a\b`, false},
		{"space", "a b", false},
		{"newline", "a\nb", false},
		{"NUL", "a\x00b", false},
		{"percent escape", "a%2fb", false},
		{"query", "a?b", false},
		{"tilde", "~root", false},
		{"UTF-8", "café", false},
		{"current as first segment", "current/x", true},
		{"current as inner segment", "a/current", false},
		{"set ID as first segment", "20261125T031500Z/x", true},
		{"set ID as inner segment", "a/20261125T031500Z", false},
		{"fullwidth slash", "a／b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ValidateName(tt.in)
			if tt.ok && err != nil {
				t.Errorf("ValidateName(%q) = %v, want nil", tt.in, err)
			}
			if !tt.ok && !errors.Is(err, ErrBadName) {
				t.Errorf("ValidateName(%q) = %v, want ErrBadName", tt.in, err)
			}
		})
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"20261125T031500Z", "19700101T000000Z", "99991231T235959Z", "20261325T031500Z", "", "2026-11-25T03:15:00Z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrSyntax) || !id.IsZero() {
				t.Fatalf("Parse(%q) = %v, %v, want zero, ErrSyntax", s, id, err)
			}
			return
		}
		// Only the canonical spelling is accepted.
		if id.IsZero() || id.String() != s {
			t.Fatalf("Parse(%q) = %v, accepted a non-canonical spelling", s, id)
		}
		if id2, err := Parse(id.String()); err != nil || id2 != id {
			t.Fatalf("Parse(String(%v)) = %v, %v", id, id2, err)
		}
	})
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"FreeBSD:14:amd64/latest", "a/../b", ".pkgcdn", "a//b", "", "a b", "x/y/z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := ValidateName(s); err != nil {
			if !errors.Is(err, ErrBadName) {
				t.Fatalf("ValidateName(%q) = %v, not ErrBadName", s, err)
			}
			return
		}
		// An accepted name is a clean relative path: no empty, dot or
		// hidden segment, nothing a URL or a SETS line would mangle.
		if len(s) == 0 || len(s) > MaxNameLen {
			t.Fatalf("ValidateName(%q) accepted length %d", s, len(s))
		}
		for _, seg := range strings.Split(s, "/") {
			if seg == "" || seg[0] == '.' {
				t.Fatalf("ValidateName(%q) accepted segment %q", s, seg)
			}
		}
		if strings.ContainsAny(s, " \t\r\n\x00\\%?#~") {
			t.Fatalf("ValidateName(%q) accepted a separator or escape byte", s)
		}
	})
}
