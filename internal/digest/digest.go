// Package digest is the SHA-256 value type that names every object pkgcdn
// stores: parsing, formatting, hashing with SIMD acceleration, and a reader
// that verifies a stream against an expected digest and size.
package digest

import (
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"

	sha256 "github.com/minio/sha256-simd"
)

// Size is the length of a SHA-256 digest in bytes.
const Size = 32

// SHA256 is a SHA-256 digest. The zero value means "unknown".
type SHA256 [Size]byte

// ErrSyntax is returned by Parse for anything but 64 lower-case hex digits.
var ErrSyntax = errors.New("digest: not a lower-case hex sha256")

// Parse parses 64 lower-case hex digits. Upper case is refused so that every
// digest has exactly one spelling (object URLs and file names are keyed by it).
func Parse(s string) (SHA256, error) {
	var d SHA256
	if len(s) != 2*Size {
		return d, ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return d, ErrSyntax
		}
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, ErrSyntax
	}
	return d, nil
}

// String returns the digest as 64 lower-case hex digits.
func (d SHA256) String() string { return hex.EncodeToString(d[:]) }

// IsZero reports whether d is the zero (unknown) digest.
func (d SHA256) IsZero() bool { return d == SHA256{} }

// MarshalText implements encoding.TextMarshaler.
func (d SHA256) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *SHA256) UnmarshalText(b []byte) error {
	v, err := Parse(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// New returns a new SHA-256 hash (SIMD-accelerated where the CPU allows).
func New() hash.Hash { return sha256.New() }

// Sum returns the SHA-256 digest of b.
func Sum(b []byte) SHA256 { return SHA256(sha256.Sum256(b)) }

// FromHash returns the digest accumulated so far in h, which must be a SHA-256 hash.
func FromHash(h hash.Hash) SHA256 {
	var d SHA256
	h.Sum(d[:0])
	return d
}

// FromReader hashes r to its end and returns its digest and length.
func FromReader(r io.Reader) (SHA256, int64, error) {
	h := New()
	n, err := io.Copy(h, r)
	if err != nil {
		return SHA256{}, n, err
	}
	return FromHash(h), n, nil
}

// MismatchError reports bytes whose digest is not the one expected.
type MismatchError struct {
	Want, Got SHA256
}

// Error implements error.
func (e *MismatchError) Error() string {
	return fmt.Sprintf("sha256 mismatch: want %s, got %s", e.Want, e.Got)
}

// SizeError reports a stream longer or shorter than the size expected.
type SizeError struct {
	Want, Got int64
}

// Error implements error.
func (e *SizeError) Error() string {
	return fmt.Sprintf("size mismatch: want %d bytes, got %d", e.Want, e.Got)
}

// Verifier is an io.Reader that passes bytes through from an underlying
// reader while hashing them. At the end of the stream it returns io.EOF only
// if the bytes matched the expected digest and size; otherwise it returns a
// *MismatchError or *SizeError instead of io.EOF. It reads no more than the
// expected size plus one byte, so an endless stream is cut off.
type Verifier struct {
	r    io.Reader
	h    hash.Hash
	want SHA256
	size int64 // expected size; -1 if unknown
	n    int64
	err  error
}

// NewVerifier returns a Verifier of r against want and size (size < 0: any
// size, and then nothing cuts an endless stream off). A zero want never
// matches: an unknown digest cannot be verified.
func NewVerifier(r io.Reader, want SHA256, size int64) *Verifier {
	if size >= 0 && size < math.MaxInt64 {
		r = io.LimitReader(r, size+1)
	}
	return &Verifier{r: r, h: New(), want: want, size: size}
}

// Read implements io.Reader. It never returns a byte past the expected size:
// the byte that proves a stream too long is withheld, and the read that
// finds it returns a *SizeError (whose Got is the expected size plus one).
func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	n, err := v.r.Read(p)
	if v.size >= 0 && v.n+int64(n) > v.size {
		v.err = &SizeError{Want: v.size, Got: v.n + int64(n)}
		n = int(v.size - v.n) // withhold everything past size
		v.h.Write(p[:n])
		v.n = v.size
		return n, v.err
	}
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		switch got := FromHash(v.h); {
		case v.size >= 0 && v.n != v.size:
			err = &SizeError{Want: v.size, Got: v.n}
		case got != v.want:
			err = &MismatchError{Want: v.want, Got: got}
		}
	}
	v.err = err
	return n, err
}

// N returns the number of bytes passed through so far.
func (v *Verifier) N() int64 { return v.n }

// Sum returns the digest of the bytes read so far.
func (v *Verifier) Sum() SHA256 { return FromHash(v.h) }
