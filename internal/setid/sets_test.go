package setid

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

var (
	sumA = digest.Sum([]byte("a"))
	sumB = digest.Sum([]byte("b"))
)

func sampleSets(t testing.TB) Sets {
	return Sets{
		{Set: "FreeBSD:13:amd64/latest", ID: mustParse(t, "20261125T031500Z"), Manifest: sumA},
		{Set: "FreeBSD:14:amd64/latest", ID: mustParse(t, "20261125T041500Z"), Manifest: sumB},
		{Set: "FreeBSD:14:amd64/quarterly", ID: mustParse(t, "20261001T000000Z"), Manifest: sumA},
	}
}

func TestSetsRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		sets Sets
	}{
		{"empty", nil},
		{"one", sampleSets(t)[:1]},
		{"three", sampleSets(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := tt.sets.Bytes()
			got, err := ParseSets(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ParseSets(%q) = %v", b, err)
			}
			if !slices.Equal(got, tt.sets) {
				t.Errorf("ParseSets(Bytes(%v)) = %v", tt.sets, got)
			}
			if b2 := got.Bytes(); !bytes.Equal(b2, b) {
				t.Errorf("Bytes(ParseSets(%q)) = %q", b, b2)
			}
		})
	}
}

func TestSetsBytesIsCanonical(t *testing.T) {
	t.Parallel()
	s := sampleSets(t)
	want := "pkgcdn-sets v1\n" +
		"FreeBSD:13:amd64/latest 20261125T031500Z " + sumA.String() + "\n" +
		"FreeBSD:14:amd64/latest 20261125T041500Z " + sumB.String() + "\n" +
		"FreeBSD:14:amd64/quarterly 20261001T000000Z " + sumA.String() + "\n"
	if got := string(s.Bytes()); got != want {
		t.Errorf("Bytes() = %q, want %q", got, want)
	}
	// The order of the input does not matter.
	rev := slices.Clone(s)
	slices.Reverse(rev)
	if got := string(rev.Bytes()); got != want {
		t.Errorf("Bytes() of reversed = %q, want %q", got, want)
	}
	if !slices.Equal(s, sampleSets(t)) {
		t.Error("Bytes() reordered its receiver")
	}
}

func TestParseSetsRejects(t *testing.T) {
	h := "pkgcdn-sets v1\n"
	l1 := "FreeBSD:13:amd64/latest 20261125T031500Z " + sumA.String()
	l2 := "FreeBSD:14:amd64/latest 20261125T041500Z " + sumB.String()
	tests := []struct {
		name string
		in   string
	}{
		{"empty file", ""},
		{"wrong header", "pkgcdn-sets v2\n" + l1 + "\n"},
		{"header without newline", "pkgcdn-sets v1"},
		{"CRLF header", "pkgcdn-sets v1\r\n" + l1 + "\n"},
		{"CRLF line", h + l1 + "\r\n"},
		{"last line without newline", h + l1},
		{"blank line", h + l1 + "\n\n"},
		{"duplicate set", h + l1 + "\n" + l1 + "\n"},
		{"same set twice with other IDs", h + l1 + "\n" + strings.Replace(l1, "031500", "041500", 1) + "\n"},
		{"unsorted", h + l2 + "\n" + l1 + "\n"},
		{"two fields", h + "FreeBSD:13:amd64/latest 20261125T031500Z\n"},
		{"four fields", h + l1 + " extra\n"},
		{"double space", h + strings.Replace(l1, " ", "  ", 1) + "\n"},
		{"tab separated", h + strings.ReplaceAll(l1, " ", "\t") + "\n"},
		{"bad set name", h + strings.Replace(l1, "FreeBSD:13", "../x", 1) + "\n"},
		{"bad ID", h + strings.Replace(l1, "20261125T031500Z", "2026-11-25", 1) + "\n"},
		{"zero ID", h + strings.Replace(l1, "20261125T031500Z", "19700101T000000Z", 1) + "\n"},
		{"upper-case digest", h + strings.Replace(l1, sumA.String(), strings.ToUpper(sumA.String()), 1) + "\n"},
		{"short digest", h + l1[:len(l1)-1] + "\n"},
		{"too large", h + strings.Repeat("x", MaxSetsBytes) + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := ParseSets(strings.NewReader(tt.in))
			if !errors.Is(err, ErrBadSets) {
				t.Errorf("ParseSets(%.80q) = %v, %v, want ErrBadSets", tt.in, s, err)
			}
		})
	}
}

func TestParseSetsReadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	if _, err := ParseSets(errReader{boom}); !errors.Is(err, boom) {
		t.Errorf("ParseSets(failing reader) = %v, want %v", err, boom)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestSetsLookupAndWith(t *testing.T) {
	t.Parallel()
	s := sampleSets(t)
	if e, ok := s.Lookup("FreeBSD:14:amd64/latest"); !ok || e != s[1] {
		t.Errorf("Lookup(existing) = %v, %v, want %v, true", e, ok, s[1])
	}
	if e, ok := s.Lookup("FreeBSD:15:amd64/latest"); ok {
		t.Errorf("Lookup(missing) = %v, true, want false", e)
	}

	// Replace an existing set: same length, new ID, input untouched.
	newer := Entry{Set: "FreeBSD:14:amd64/latest", ID: mustParse(t, "20261126T000000Z"), Manifest: sumA}
	s2 := s.With(newer)
	if len(s2) != len(s) {
		t.Errorf("With(existing) has %d entries, want %d", len(s2), len(s))
	}
	if e, _ := s2.Lookup(newer.Set); e != newer {
		t.Errorf("With(existing).Lookup = %v, want %v", e, newer)
	}
	if !slices.Equal(s, sampleSets(t)) {
		t.Error("With modified its receiver")
	}

	// Add a new set: sorted into place, and the result parses.
	added := Entry{Set: "A/first", ID: mustParse(t, "20261126T000000Z"), Manifest: sumB}
	s3 := s2.With(added)
	if len(s3) != len(s)+1 || s3[0] != added {
		t.Errorf("With(new) = %v, want %v first", s3, added)
	}
	if _, err := ParseSets(bytes.NewReader(s3.Bytes())); err != nil {
		t.Errorf("ParseSets(With(...).Bytes()) = %v", err)
	}
	if s4 := Sets(nil).With(added); len(s4) != 1 || s4[0] != added {
		t.Errorf("nil.With(e) = %v, want [%v]", s4, added)
	}
}

func FuzzParseSets(f *testing.F) {
	f.Add(sampleSets(f).Bytes())
	f.Add(Sets(nil).Bytes())
	f.Add([]byte("pkgcdn-sets v1\nFreeBSD:13:amd64/latest 20261125T031500Z " + sumA.String()))
	f.Add([]byte("pkgcdn-sets v1\r\nx 20261125T031500Z " + sumA.String() + "\r\n"))
	f.Add([]byte("pkgcdn-sets v1\nb 20261125T031500Z " + sumA.String() + "\na 20261125T031500Z " + sumA.String() + "\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSets(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadSets) {
				t.Fatalf("ParseSets(%q) = %v, not ErrBadSets", data, err)
			}
			return
		}
		// Accepted means canonical: the bytes re-encode exactly.
		if b := s.Bytes(); !bytes.Equal(b, data) {
			t.Fatalf("ParseSets(%q).Bytes() = %q", data, b)
		}
		for i, e := range s {
			if ValidateName(e.Set) != nil || e.ID.IsZero() || (i > 0 && s[i-1].Set >= e.Set) {
				t.Fatalf("ParseSets(%q) accepted entry %v", data, e)
			}
		}
	})
}
