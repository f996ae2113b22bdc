package digest

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

const emptySHA = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"lower-case hex accepted", emptySHA, true},
		{"all zeros accepted", strings.Repeat("0", 64), true},
		{"upper case refused", strings.ToUpper(emptySHA), false},
		{"one upper-case digit refused", "E" + emptySHA[1:], false},
		{"empty refused", "", false},
		{"63 digits refused", emptySHA[:63], false},
		{"65 digits refused", emptySHA + "0", false},
		{"non-hex letter refused", "g" + emptySHA[1:], false},
		{"leading space refused", " " + emptySHA[1:], false},
		{"trailing newline refused", emptySHA[:63] + "\n", false},
		{"sha256: prefix refused", "sha256:" + emptySHA[:57], false},
		{"multi-byte UTF-8 of the right byte length refused", "é" + emptySHA[2:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := Parse(tt.in)
			if tt.ok {
				if err != nil || d.String() != tt.in {
					t.Errorf("Parse(%q) = %v, %v, want %s, nil", tt.in, d, err, tt.in)
				}
				return
			}
			if !errors.Is(err, ErrSyntax) || !d.IsZero() {
				t.Errorf("Parse(%q) = %v, %v, want zero, ErrSyntax", tt.in, d, err)
			}
		})
	}
}

func TestTextRoundTrip(t *testing.T) {
	want := Sum([]byte("hello"))
	b, err := want.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	var got SHA256
	if err := got.UnmarshalText(b); err != nil || got != want {
		t.Errorf("UnmarshalText(%q) = %v, %v, want %v", b, got, err, want)
	}
	if err := got.UnmarshalText([]byte("xyz")); !errors.Is(err, ErrSyntax) {
		t.Errorf("UnmarshalText(%q) = %v, want ErrSyntax", "xyz", err)
	}
}

func TestSumMatchesStdlib(t *testing.T) {
	for _, n := range []int{0, 1, 55, 56, 64, 1000, 1 << 20} {
		b := make([]byte, n)
		_, _ = crand.Read(b) // crypto/rand.Read never fails
		if got, want := Sum(b), SHA256(sha256.Sum256(b)); got != want {
			t.Errorf("Sum(%d bytes) = %v, want %v", n, got, want)
		}
		got, size, err := FromReader(bytes.NewReader(b))
		if err != nil || size != int64(n) || got != SHA256(sha256.Sum256(b)) {
			t.Errorf("FromReader(%d bytes) = %v, %d, %v", n, got, size, err)
		}
	}
	if got := Sum(nil).String(); got != emptySHA {
		t.Errorf("Sum(nil) = %s, want %s", got, emptySHA)
	}
}

func TestFromReaderError(t *testing.T) {
	boom := errors.New("boom")
	if _, _, err := FromReader(iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("FromReader(failing) error = %v, want %v", err, boom)
	}
}

// endless is a stream that never ends.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestVerifier(t *testing.T) {
	data := []byte("the quick brown fox jumps over the lazy dog")
	sum := Sum(data)
	other := bytes.ToUpper(data) // same length, different bytes
	tests := []struct {
		name    string
		r       io.Reader
		size    int64
		want    []byte // bytes the reader must pass through
		errType any    // nil: clean EOF
	}{
		{"right bytes end in EOF", bytes.NewReader(data), int64(len(data)), data, nil},
		{"right bytes, size unknown", bytes.NewReader(data), -1, data, nil},
		{"right bytes one at a time", iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)), data, nil},
		{"right bytes with data and EOF together", iotest.DataErrReader(bytes.NewReader(data)), int64(len(data)), data, nil},
		{"wrong bytes same length", bytes.NewReader(other), int64(len(data)), other, new(*MismatchError)},
		{"wrong bytes size unknown", bytes.NewReader(other), -1, other, new(*MismatchError)},
		{"short stream", bytes.NewReader(data[:10]), int64(len(data)), data[:10], new(*SizeError)},
		{"empty stream", bytes.NewReader(nil), int64(len(data)), nil, new(*SizeError)},
		{"long stream withholds the extra bytes", bytes.NewReader(append(data, '!')), int64(len(data)), data, new(*SizeError)},
		{"long stream one byte at a time", iotest.OneByteReader(bytes.NewReader(append(data, "!!"...))), int64(len(data)), data, new(*SizeError)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v := NewVerifier(tt.r, sum, tt.size)
			got, err := io.ReadAll(v)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("ReadAll(Verifier) passed %q, want %q", got, tt.want)
			}
			if v.N() != int64(len(tt.want)) {
				t.Errorf("N() = %d, want %d", v.N(), len(tt.want))
			}
			switch target := tt.errType.(type) {
			case nil:
				if err != nil {
					t.Errorf("ReadAll(Verifier) error = %v, want nil", err)
				}
				if v.Sum() != sum {
					t.Errorf("Sum() = %v, want %v", v.Sum(), sum)
				}
			case **MismatchError:
				if !errors.As(err, target) {
					t.Fatalf("ReadAll(Verifier) error = %v, want *MismatchError", err)
				}
				if (*target).Want != sum || (*target).Got != Sum(tt.want) {
					t.Errorf("MismatchError = %+v, want {Want: %v, Got: %v}", *target, sum, Sum(tt.want))
				}
			case **SizeError:
				if !errors.As(err, target) {
					t.Fatalf("ReadAll(Verifier) error = %v, want *SizeError", err)
				}
				if (*target).Want != tt.size {
					t.Errorf("SizeError.Want = %d, want %d", (*target).Want, tt.size)
				}
			}
			// The error is sticky: the stream is never "fixed" by reading on.
			if n, err2 := v.Read(make([]byte, 10)); n != 0 || (err2 == nil) || (tt.errType == nil) != (err2 == io.EOF) {
				t.Errorf("Read after end = %d, %v, want 0 and the same end", n, err2)
			}
		})
	}
}

func TestVerifierCutsOffEndlessStream(t *testing.T) {
	src := &endless{}
	const size = 1 << 20
	v := NewVerifier(src, SHA256{}, size)
	n, err := io.Copy(io.Discard, v)
	var se *SizeError
	if !errors.As(err, &se) {
		t.Fatalf("Copy(Verifier(endless)) error = %v, want *SizeError", err)
	}
	if n != size || se.Got != size+1 {
		t.Errorf("Copy(Verifier(endless)) = %d bytes, SizeError.Got %d, want %d and %d", n, se.Got, size, size+1)
	}
	if src.n > size+1 {
		t.Errorf("Verifier read %d bytes of an endless stream, want at most %d", src.n, size+1)
	}
}

func TestVerifierPassesReadError(t *testing.T) {
	boom := errors.New("boom")
	v := NewVerifier(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), Sum([]byte("abc")), 3)
	if _, err := io.ReadAll(v); !errors.Is(err, boom) {
		t.Errorf("ReadAll(Verifier(failing)) error = %v, want %v", err, boom)
	}
}

func TestErrorMessages(t *testing.T) {
	a, b := Sum([]byte("a")), Sum([]byte("b"))
	if got := (&MismatchError{Want: a, Got: b}).Error(); !strings.Contains(got, a.String()) || !strings.Contains(got, b.String()) {
		t.Errorf("MismatchError.Error() = %q, want both digests", got)
	}
	if got := (&SizeError{Want: 5, Got: 6}).Error(); !strings.Contains(got, "5") || !strings.Contains(got, "6") {
		t.Errorf("SizeError.Error() = %q, want both sizes", got)
	}
}
