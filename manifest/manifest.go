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
// Entries are sorted by path (byte order) and unique, and no path is also
// the directory of another ("a" and "a/b"). The path comes last, so it may
// hold spaces; relpath.Validate forbids newlines and control bytes. Numbers
// have no sign or leading zero; the count is the number of entry lines.
// "modified" is the ID of the set in which that path last changed its
// content, at most the manifest's ID: it is served as the file's
// Last-Modified.
//
// The same Manifest always encodes to the same bytes, and Decode accepts no
// other text for it ("\r\n", a missing last "\n", extra spaces, upper-case hex
// are all ErrMalformed); it accepts any zstd framing of that text, up to
// MaxDecodedBytes decompressed. The detached signature
// (manifest.minisig) is a minisign signature of the compressed bytes whose
// trusted comment is "pkgcdn-manifest set=<name> id=<ID> expires=<RFC 3339>",
// so `minisign -Vm manifest -p key.pub` proves the set, ID and expiry.
package manifest

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

// Lookup returns the entry for path, and whether there is one. It uses binary
// search, so m.Entries must be sorted (as Decode and Validate guarantee).
func (m *Manifest) Lookup(path string) (Entry, bool) {
	i, ok := slices.BinarySearchFunc(m.Entries, path, cmpPath)
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

// Validate checks every field: set name, IDs, times, entry paths, order, and
// that no path is both a file and a directory of another file. A Manifest
// that passes Validate encodes to bytes that Decode accepts.
func (m *Manifest) Validate() error {
	if err := m.validateHeader(); err != nil {
		return err
	}
	if len(m.Entries) > MaxEntries {
		return fmt.Errorf("%d files: over the limit of %d", len(m.Entries), MaxEntries)
	}
	for i := range m.Entries {
		if err := m.checkEntry(i); err != nil {
			return err
		}
	}
	return nil
}

// validateHeader checks everything but the entries.
func (m *Manifest) validateHeader() error {
	if err := setid.ValidateName(m.Set); err != nil {
		return err
	}
	if m.ID.IsZero() {
		return errors.New("manifest has no set ID")
	}
	if !m.Previous.IsZero() && !m.ID.After(m.Previous) {
		return fmt.Errorf("set ID %s not after previous %s", m.ID, m.Previous)
	}
	for _, t := range []time.Time{m.Created, m.Expires} {
		// RFC 3339 has four-digit years: anything else would not decode.
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("time %s: year outside 0001-9999", t)
		}
	}
	// Compare what is encoded (UTC seconds), or a manifest that expires
	// within the second it was created would encode but not decode.
	if !trunc(m.Expires).After(trunc(m.Created)) {
		return errors.New("manifest expires before it is created")
	}
	return nil
}

// checkEntry checks m.Entries[i] alone and against the entries before it,
// which must already have been checked.
func (m *Manifest) checkEntry(i int) error {
	e := m.Entries[i]
	if err := relpath.Validate(e.Path); err != nil {
		return err
	}
	if e.Size < 0 {
		return fmt.Errorf("%s: negative size", e.Path)
	}
	if e.Modified.IsZero() || e.Modified.After(m.ID) {
		return fmt.Errorf("%s: modified ID %q not in (0, %s]", e.Path, e.Modified, m.ID)
	}
	if i == 0 {
		return nil
	}
	if m.Entries[i-1].Path >= e.Path {
		return fmt.Errorf("%s: entries not sorted or repeated", e.Path)
	}
	// A file "a" and a file "a/b" cannot both exist. "a" need not be right
	// before "a/b" ("a-b" sorts between them), so look every parent up.
	before := m.Entries[:i]
	for j := strings.IndexByte(e.Path, '/'); j >= 0; j = nextSlash(e.Path, j) {
		dir := e.Path[:j]
		if _, found := slices.BinarySearchFunc(before, dir, cmpPath); found {
			return fmt.Errorf("%s: a file cannot also be a directory (%s)", e.Path, dir)
		}
	}
	return nil
}

// nextSlash returns the index of the first "/" in p after index j, or -1.
func nextSlash(p string, j int) int {
	k := strings.IndexByte(p[j+1:], '/')
	if k < 0 {
		return -1
	}
	return j + 1 + k
}

func cmpPath(e Entry, p string) int { return strings.Compare(e.Path, p) }

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
	var lastMod setid.ID
	var lastModText string
	for _, e := range m.Entries {
		var h [2 * digest.Size]byte
		hex.Encode(h[:], e.SHA256[:])
		b.Write(h[:])
		b.WriteByte(' ')
		b.Write(strconv.AppendInt(num[:0], e.Size, 10))
		b.WriteByte(' ')
		if e.Modified != lastMod {
			lastMod, lastModText = e.Modified, e.Modified.String()
		}
		b.WriteString(lastModText)
		b.WriteByte(' ')
		b.WriteString(e.Path)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func fmtTime(t time.Time) string { return trunc(t).Format(time.RFC3339) }

// trunc returns t as it is encoded: UTC, whole seconds.
func trunc(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

// The encoder is expensive to build and safe for concurrent EncodeAll.
var (
	encoderOnce sync.Once
	encoder     *zstd.Encoder
)

func getEncoder() *zstd.Encoder {
	encoderOnce.Do(func() {
		var err error
		encoder, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true), zstd.WithZeroFrames(true))
		if err != nil {
			panic(err) // only fails on invalid options, which are constant
		}
	})
	return encoder
}

// maxDecodedBytes is MaxDecodedBytes; tests lower it.
var maxDecodedBytes int64 = MaxDecodedBytes

// maxWindow bounds the zstd window, hence the memory one Decode holds for
// history. Our encoder uses at most 8 MiB, as does the zstd tool up to
// level 19.
const maxWindow = 16 << 20

// decoders holds streaming zstd decoders. A stream is decoded and parsed a
// line at a time, so neither a bomb nor a large manifest is ever held in
// memory decompressed: only the entries that parsed are. With concurrency 1
// a decoder runs no goroutines, so one dropped by the pool needs no Close.
var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(MaxDecodedBytes), zstd.WithDecoderMaxWindow(maxWindow))
	if err != nil {
		panic(err) // only fails on invalid options, which are constant
	}
	return d
}}

// Encode validates m and returns its canonical compressed bytes.
func (m *Manifest) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return getEncoder().EncodeAll(m.text(), nil), nil
}

// Decode parses compressed manifest bytes. It does not check a signature:
// use Open for bytes from anywhere but a trusted local disk. It accepts
// only the canonical text (any valid zstd framing of it), decompresses at
// most MaxDecodedBytes, and stops at the first bad line.
func Decode(data []byte) (*Manifest, error) {
	dec := decoders.Get().(*zstd.Decoder)
	if err := dec.Reset(bytes.NewReader(data)); err != nil {
		decoders.Put(dec)
		return nil, fmt.Errorf("%w: zstd: %v", ErrMalformed, err)
	}
	defer func() {
		_ = dec.Reset(nil) // drop data; a nil reader cannot fail to reset
		decoders.Put(dec)
	}()
	m, err := parse(&limitedReader{r: dec, n: maxDecodedBytes, limit: maxDecodedBytes})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// limitedReader is io.LimitReader that fails instead of ending when there is
// more, so a manifest cut at the limit is never mistaken for a complete one.
type limitedReader struct {
	r     io.Reader
	n     int64 // bytes left
	limit int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// At the limit: fine if the stream ends here too.
		var one [1]byte
		n, err := l.r.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("decompressed manifest over %d bytes", l.limit)
		}
		return 0, err
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// maxLine bounds one line: an entry with the longest path is 64 + 1 + 19 +
// 1 + 16 + 1 + relpath.MaxLen bytes, well below.
const maxLine = 2 * relpath.MaxLen

// lines reads "\n"-terminated lines: a last line without "\n", a line over
// maxLine bytes and a read error are all errors, and "\r" is kept (and so
// refused by every field's check).
type lines struct {
	br *bufio.Reader
	n  int // number of the line last returned
}

// next returns the next line without its "\n", or io.EOF at a clean end.
func (l *lines) next() (string, error) {
	b, err := l.br.ReadSlice('\n')
	switch {
	case err == nil:
		l.n++
		return string(b[:len(b)-1]), nil
	case err == io.EOF && len(b) == 0:
		return "", io.EOF
	case err == io.EOF:
		return "", fmt.Errorf("%w: line %d: no final newline", ErrMalformed, l.n+1)
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("%w: line %d: longer than %d bytes", ErrMalformed, l.n+1, maxLine)
	}
	return "", fmt.Errorf("%w: line %d: %v", ErrMalformed, l.n+1, err)
}

// field returns the value of the next line, which must be "key value".
func (l *lines) field(key string) (string, error) {
	s, err := l.next()
	if err == io.EOF {
		return "", fmt.Errorf("%w: line %d: missing %q", ErrMalformed, l.n+1, key)
	}
	if err != nil {
		return "", err
	}
	v, ok := strings.CutPrefix(s, key+" ")
	if !ok {
		return "", fmt.Errorf("%w: line %d: want %q", ErrMalformed, l.n, key)
	}
	return v, nil
}

// parse reads the canonical text from r, checking each line as it arrives.
func parse(r io.Reader) (*Manifest, error) {
	l := &lines{br: bufio.NewReaderSize(r, maxLine)}
	if s, err := l.next(); err != nil || s != header {
		return nil, fmt.Errorf("%w: first line is not %q", ErrMalformed, header)
	}
	m := new(Manifest)
	var err error
	var v string
	if m.Set, err = l.field("set"); err != nil {
		return nil, err
	}
	if v, err = l.field("id"); err != nil {
		return nil, err
	}
	if m.ID, err = setid.Parse(v); err != nil {
		return nil, fmt.Errorf("%w: id: %v", ErrMalformed, err)
	}
	if v, err = l.field("previous"); err != nil {
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
		if v, err = l.field(f.key); err != nil {
			return nil, err
		}
		if *f.t, err = time.Parse(time.RFC3339, v); err != nil || fmtTime(*f.t) != v {
			return nil, fmt.Errorf("%w: %s: not RFC 3339 UTC seconds", ErrMalformed, f.key)
		}
	}
	if v, err = l.field("files"); err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxEntries || strconv.Itoa(n) != v {
		return nil, fmt.Errorf("%w: files: bad count %q", ErrMalformed, v)
	}
	if err := m.validateHeader(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// Never trust the count for an allocation: grow as lines really arrive.
	m.Entries = make([]Entry, 0, min(n, 1<<16))
	var lastMod string
	var lastModID setid.ID
	for {
		s, err := l.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if len(m.Entries) == n {
			return nil, fmt.Errorf("%w: line %d: more than %d files", ErrMalformed, l.n, n)
		}
		f := strings.SplitN(s, " ", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("%w: line %d: want 4 fields", ErrMalformed, l.n)
		}
		var e Entry
		if e.SHA256, err = digest.Parse(f[0]); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, l.n, err)
		}
		if e.Size, err = strconv.ParseInt(f[1], 10, 64); err != nil || strconv.FormatInt(e.Size, 10) != f[1] {
			return nil, fmt.Errorf("%w: line %d: bad size", ErrMalformed, l.n)
		}
		// Most entries share a few modified IDs: parse each spelling once.
		if f[2] == lastMod && !lastModID.IsZero() {
			e.Modified = lastModID
		} else if e.Modified, err = setid.Parse(f[2]); err != nil {
			return nil, fmt.Errorf("%w: line %d: modified: %v", ErrMalformed, l.n, err)
		}
		lastMod, lastModID = f[2], e.Modified
		e.Path = f[3]
		m.Entries = append(m.Entries, e)
		if err := m.checkEntry(len(m.Entries) - 1); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrMalformed, l.n, err)
		}
	}
	if len(m.Entries) != n {
		return nil, fmt.Errorf("%w: %d files, header says %d", ErrMalformed, len(m.Entries), n)
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
