// Package manifest defines the signed list of files of one published package
// set, and its exact bytes.
//
// # Encoding
//
// A manifest file is the zstd compression (one frame, level "default", no
// dictionary, content checksum on) of this UTF-8 text, each line ending "\n":
//
//	pkgcdn-manifest v1
//	set <set name>
//	id <set ID>
//	previous <set ID, or "-" for the first set>
//	created <RFC 3339 UTC, seconds>
//	expires <RFC 3339 UTC, seconds>
//	files <number of entries>
//	<sha256 hex> <size in bytes> <modified set ID> <path>
//	...
//
// Entries are sorted by path (byte order) and unique. The path comes last, so
// it may hold spaces; relpath.Validate forbids newlines and control bytes.
// "modified" is the ID of the set in which that path last changed its content:
// it is served as the file's Last-Modified.
//
// The same Manifest always encodes to the same bytes. The detached signature
// (manifest.minisig) is a minisign signature of the compressed bytes whose
// trusted comment is "pkgcdn-manifest set=<name> id=<ID> expires=<RFC 3339>",
// so `minisign -Vm manifest -p key.pub` proves the set, ID and expiry.
package manifest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/relpath"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

const header = "pkgcdn-manifest v1"

// DefaultValidity is how long a manifest stays valid unless told otherwise.
const DefaultValidity = 30 * 24 * time.Hour

// MaxEntries bounds the number of files in a set.
const MaxEntries = 10_000_000

// MaxDecodedBytes bounds a decompressed manifest accepted from the network.
const MaxDecodedBytes = 1 << 30

// Entry is one file of a set.
type Entry struct {
	Path     string        // relative, slash-separated, relpath.Validate-clean
	Size     int64         // bytes
	SHA256   digest.SHA256 // content
	Modified setid.ID      // ID of the set in which Path last changed content
}

// Manifest is the list of files of one published set.
type Manifest struct {
	Set      string
	ID       setid.ID
	Previous setid.ID // zero for a set's first publish
	Created  time.Time
	Expires  time.Time
	Entries  []Entry // sorted by Path, unique
}

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed manifest")

// ErrExpired means the manifest's expiry time has passed.
var ErrExpired = errors.New("manifest expired")

// ErrMismatch means the signature's trusted comment does not name this manifest.
var ErrMismatch = errors.New("signature does not match manifest")

// Lookup returns the entry for path, using binary search.
func (m *Manifest) Lookup(path string) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(m.Entries, path, func(e Entry, p string) int { return strings.Compare(e.Path, p) })
	if !ok {
		return Entry{}, false
	}
	return m.Entries[i], true
}

// TotalSize returns the sum of all entries' sizes.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, e := range m.Entries {
		n += e.Size
	}
	return n
}

// Expired reports whether the manifest has expired at now.
func (m *Manifest) Expired(now time.Time) bool { return !now.Before(m.Expires) }

// Sort sorts the entries by path.
func (m *Manifest) Sort() {
	slices.SortFunc(m.Entries, func(a, b Entry) int { return strings.Compare(a.Path, b.Path) })
}

// Validate checks every field: set name, IDs, times, entry paths, order.
func (m *Manifest) Validate() error {
	if err := setid.ValidateName(m.Set); err != nil {
		return err
	}
	if m.ID.IsZero() {
		return errors.New("manifest has no set ID")
	}
	if !m.Previous.IsZero() && !m.ID.After(m.Previous) {
		return fmt.Errorf("set ID %s not after previous %s", m.ID, m.Previous)
	}
	if !m.Expires.After(m.Created) {
		return errors.New("manifest expires before it is created")
	}
	if len(m.Entries) > MaxEntries {
		return fmt.Errorf("%d files: over the limit of %d", len(m.Entries), MaxEntries)
	}
	for i, e := range m.Entries {
		if err := relpath.Validate(e.Path); err != nil {
			return err
		}
		if e.Size < 0 {
			return fmt.Errorf("%s: negative size", e.Path)
		}
		if e.Modified.IsZero() || e.Modified.After(m.ID) {
			return fmt.Errorf("%s: modified ID %q not in (0, %s]", e.Path, e.Modified, m.ID)
		}
		if i > 0 && m.Entries[i-1].Path >= e.Path {
			return fmt.Errorf("%s: entries not sorted or repeated", e.Path)
		}
		if i > 0 && strings.HasPrefix(e.Path, m.Entries[i-1].Path+"/") {
			return fmt.Errorf("%s: a file cannot also be a directory (%s)", e.Path, m.Entries[i-1].Path)
		}
	}
	return nil
}

// text returns the uncompressed canonical text.
func (m *Manifest) text() []byte {
	var b bytes.Buffer
	b.Grow(64 + 120*len(m.Entries))
	prev := "-"
	if !m.Previous.IsZero() {
		prev = m.Previous.String()
	}
	fmt.Fprintf(&b, "%s\nset %s\nid %s\nprevious %s\ncreated %s\nexpires %s\nfiles %d\n",
		header, m.Set, m.ID, prev, fmtTime(m.Created), fmtTime(m.Expires), len(m.Entries))
	var num [20]byte
	for _, e := range m.Entries {
		var hex [64]byte
		h, _ := e.SHA256.MarshalText()
		copy(hex[:], h)
		b.Write(hex[:])
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.Size, 10))
		b.WriteByte(' ')
		b.WriteString(e.Modified.String())
		b.WriteByte(' ')
		b.WriteString(e.Path)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func fmtTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// zstd coders are expensive to build and safe for concurrent EncodeAll/DecodeAll.
var (
	coderOnce sync.Once
	encoder   *zstd.Encoder
	decoder   *zstd.Decoder
)

func coders() (*zstd.Encoder, *zstd.Decoder) {
	coderOnce.Do(func() {
		var err error
		encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // only fails on invalid options, which are constant
		}
		decoder, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxDecodedBytes), zstd.WithDecoderMaxWindow(64<<20))
		if err != nil {
			panic(err)
		}
	})
	return encoder, decoder
}

// Encode validates m and returns its canonical compressed bytes.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	enc, _ := coders()
	return enc.EncodeAll(m.text(), nil), nil
}

// Decode parses compressed manifest bytes. It does not check a signature:
// use Open for bytes from anywhere but a trusted local disk.
func Decode(data []byte) (*Manifest, error) {
	_, dec := coders()
	text, err := dec.DecodeAll(data, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
	}
	return parse(text)
}

func parse(text []byte) (*Manifest, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 4096), 2*relpath.MaxLen)
	line := 0
	next := func(key string) (string, error) {
		line++
		if !sc.Scan() {
			return "", fmt.Errorf("%w: line %d: missing %q", ErrMalformed, line, key)
		}
		v, ok := strings.CutPrefix(sc.Text(), key+" ")
		if !ok {
			return "", fmt.Errorf("%w: line %d: want %q", ErrMalformed, line, key)
		}
		return v, nil
	}
	line++
	if !sc.Scan() || sc.Text() != header {
		return nil, fmt.Errorf("%w: first line is not %q", ErrMalformed, header)
	}
	m := new(Manifest)
	var err error
	var v string
	if m.Set, err = next("set"); err != nil {
		return nil, err
	}
	if v, err = next("id"); err != nil {
		return nil, err
	}
	if m.ID, err = setid.Parse(v); err != nil {
		return nil, fmt.Errorf("%w: id: %v", ErrMalformed, err)
	}
	if v, err = next("previous"); err != nil {
		return nil, err
	}
	if v != "-" {
		if m.Previous, err = setid.Parse(v); err != nil {
			return nil, fmt.Errorf("%w: previous: %v", ErrMalformed, err)
		}
	}
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"created", &m.Created}, {"expires", &m.Expires}} {
		if v, err = next(f.key); err != nil {
			return nil, err
		}
		if *f.t, err = time.Parse(time.RFC3339, v); err != nil || fmtTime(*f.t) != v {
			return nil, fmt.Errorf("%w: %s: not RFC 3339 UTC seconds", ErrMalformed, f.key)
		}
	}
	if v, err = next("files"); err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxEntries || strconv.Itoa(n) != v {
		return nil, fmt.Errorf("%w: files: bad count %q", ErrMalformed, v)
	}
	// Never trust the count for an allocation: grow as lines really arrive.
	m.Entries = make([]Entry, 0, min(n, 1<<16))
	for sc.Scan() {
		line++
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("%w: line %d: want 4 fields", ErrMalformed, line)
		}
		var e Entry
		if e.SHA256, err = digest.Parse(f[0]); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, line, err)
		}
		if e.Size, err = strconv.ParseInt(f[1], 10, 64); err != nil || strconv.FormatInt(e.Size, 10) != f[1] {
			return nil, fmt.Errorf("%w: line %d: bad size", ErrMalformed, line)
		}
		if e.Modified, err = setid.Parse(f[2]); err != nil {
			return nil, fmt.Errorf("%w: line %d: modified: %v", ErrMalformed, line, err)
		}
		e.Path = f[3]
		m.Entries = append(m.Entries, e)
		if len(m.Entries) > n {
			return nil, fmt.Errorf("%w: more than %d files", ErrMalformed, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, line, err)
	}
	if len(m.Entries) != n {
		return nil, fmt.Errorf("%w: %d files, header says %d", ErrMalformed, len(m.Entries), n)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

// TrustedComment returns the trusted comment that the signature of m carries.
func (m *Manifest) TrustedComment() string {
	return fmt.Sprintf("pkgcdn-manifest set=%s id=%s expires=%s", m.Set, m.ID, fmtTime(m.Expires))
}

// Sign encodes m and signs it. It returns the manifest file and its .minisig.
func (m *Manifest) Sign(s *sign.Signer) (data, sig []byte, err error) {
	data, err = m.Encode()
	if err != nil {
		return nil, nil, err
	}
	return data, s.Sign(data, m.TrustedComment()), nil
}

// Open verifies sig over data with v, decodes data, and checks that the
// trusted comment names the decoded set, ID and expiry. Unless allowExpired,
// a manifest expired at now is refused with ErrExpired. An expired manifest
// is still returned alongside ErrExpired so a caller can keep serving it
// flagged degraded.
func Open(data, sig []byte, v *sign.Verifier, now time.Time) (*Manifest, error) {
	tc, err := v.Verify(data, sig)
	if err != nil {
		return nil, fmt.Errorf("verify manifest: %w", err)
	}
	m, err := Decode(data)
	if err != nil {
		return nil, err
	}
	if tc != m.TrustedComment() {
		return nil, fmt.Errorf("%w: trusted comment %q, manifest is set=%s id=%s", ErrMismatch, tc, m.Set, m.ID)
	}
	if m.Expired(now) {
		return m, fmt.Errorf("%w: set %s id %s expired at %s", ErrExpired, m.Set, m.ID, fmtTime(m.Expires))
	}
	return m, nil
}
