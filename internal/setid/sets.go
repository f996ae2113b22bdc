package setid

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// The SETS file lists every live set, one line each, sorted by name:
//
//	pkgcdn-sets v1
//	<set name> <set ID> <sha256 of the set's manifest file>
//
// It is signed (SETS.minisig) with the manifest key. Its bytes are
// deterministic for the same content.
const setsHeader = "pkgcdn-sets v1"

// MaxSetsBytes bounds a SETS file accepted from the network.
const MaxSetsBytes = 1 << 20

// Entry is one line of the SETS file.
type Entry struct {
	Set      string
	ID       ID
	Manifest digest.SHA256 // sha256 of the set's (compressed) manifest file
}

// Sets is the content of a SETS file: at most one entry per set, sorted by name.
type Sets []Entry

// ErrBadSets is wrapped by ParseSets' errors.
var ErrBadSets = errors.New("malformed SETS file")

// ParseSets parses a SETS file. It accepts only the canonical bytes (those
// Bytes writes: "\n" line ends, single spaces, the last line ended) and
// rejects duplicates, unsorted lines, invalid names, IDs and digests, and
// files over MaxSetsBytes.
func ParseSets(r io.Reader) (Sets, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSetsBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSetsBytes {
		return nil, fmt.Errorf("%w: over %d bytes", ErrBadSets, MaxSetsBytes)
	}
	// Lines are split by hand, not by bufio.Scanner, which would also accept
	// "\r\n" and a last line without "\n": only the canonical bytes parse.
	rest, ok := bytes.CutPrefix(data, []byte(setsHeader+"\n"))
	if !ok {
		return nil, fmt.Errorf("%w: first line is not %q", ErrBadSets, setsHeader)
	}
	var s Sets
	for line := 2; len(rest) > 0; line++ {
		text, after, ok := bytes.Cut(rest, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("%w: line %d: no final newline", ErrBadSets, line)
		}
		rest = after
		f := strings.Split(string(text), " ")
		if len(f) != 3 {
			return nil, fmt.Errorf("%w: line %d: want 3 fields", ErrBadSets, line)
		}
		if err := ValidateName(f[0]); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadSets, line, err)
		}
		id, err := Parse(f[1])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadSets, line, err)
		}
		sum, err := digest.Parse(f[2])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadSets, line, err)
		}
		if n := len(s); n > 0 && s[n-1].Set >= f[0] {
			return nil, fmt.Errorf("%w: line %d: set %q out of order or repeated", ErrBadSets, line, f[0])
		}
		s = append(s, Entry{Set: f[0], ID: id, Manifest: sum})
	}
	return s, nil
}

// Bytes returns the canonical encoding of s (entries sorted by name). Only a
// Sets whose names pass ValidateName, whose IDs are not zero and whose sets
// are unique encodes to bytes that ParseSets accepts.
func (s Sets) Bytes() []byte {
	sorted := slices.Clone(s)
	slices.SortFunc(sorted, func(a, b Entry) int { return strings.Compare(a.Set, b.Set) })
	var b bytes.Buffer
	b.WriteString(setsHeader + "\n")
	for _, e := range sorted {
		fmt.Fprintf(&b, "%s %s %s\n", e.Set, e.ID, e.Manifest)
	}
	return b.Bytes()
}

// Lookup returns the entry of set name, and whether there is one.
func (s Sets) Lookup(name string) (Entry, bool) {
	for _, e := range s {
		if e.Set == name {
			return e, true
		}
	}
	return Entry{}, false
}

// With returns a copy of s with e added or replacing the entry of its set.
func (s Sets) With(e Entry) Sets {
	out := make(Sets, 0, len(s)+1)
	for _, x := range s {
		if x.Set != e.Set {
			out = append(out, x)
		}
	}
	out = append(out, e)
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Set, b.Set) })
	return out
}
