package manifest

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

var update = flag.Bool("update", false, "rewrite the golden files and fixtures in testdata")

var (
	created = time.Date(2026, 11, 25, 3, 15, 0, 0, time.UTC)
	id1     = setid.FromTime(created.Add(-24 * time.Hour))
	id2     = setid.FromTime(created)
)

// sample returns a manifest of n generated entries plus a few with unusual
// but valid paths. Every call builds it anew from scratch.
func sample(n int) *Manifest {
	m := &Manifest{
		Set:      "FreeBSD:14:amd64/latest",
		ID:       id2,
		Previous: id1,
		Created:  created,
		Expires:  created.Add(DefaultValidity),
	}
	for i := range n {
		p := fmt.Sprintf("All/pkg%07d-1.%d.pkg", i, i%10)
		mod := id2
		if i%3 == 0 {
			mod = id1
		}
		m.Entries = append(m.Entries, Entry{Path: p, Size: int64(i) * 1000, SHA256: digest.Sum([]byte(p)), Modified: mod})
	}
	for _, p := range []string{"All/Hashed/curl-8.10~1a2b3c.pkg", "All/p5-$x with space.pkg", "meta.conf", "packagesite.pkg", "packagesite.tzst"} {
		m.Entries = append(m.Entries, Entry{Path: p, Size: 42, SHA256: digest.Sum([]byte(p)), Modified: id1})
	}
	m.Sort()
	return m
}

// equal reports whether a and b hold the same manifest (a nil and an empty
// entry list are equal; times compare as instants).
func equal(a, b *Manifest) bool {
	return a.Set == b.Set && a.ID == b.ID && a.Previous == b.Previous &&
		a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires) &&
		slices.Equal(a.Entries, b.Entries)
}

func mustEncode(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatalf("Encode() = %v", err)
	}
	return b
}

// compress compresses text as Encode would, without validating it.
func compress(text string) []byte { return getEncoder().EncodeAll([]byte(text), nil) }

func TestEncodeIsDeterministic(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 1000} {
		a := mustEncode(t, sample(n))
		b := mustEncode(t, sample(n))
		m := sample(n)
		c := mustEncode(t, m)
		d := mustEncode(t, m)
		if !bytes.Equal(a, b) || !bytes.Equal(a, c) || !bytes.Equal(c, d) {
			t.Errorf("Encode of sample(%d) differs between calls", n)
		}
		// Time zone and sub-second parts do not change the bytes.
		m.Created = m.Created.In(time.FixedZone("CET", 3600)).Add(999 * time.Millisecond)
		if e := mustEncode(t, m); !bytes.Equal(a, e) {
			t.Errorf("Encode of sample(%d) with a CET, sub-second Created differs", n)
		}
	}
}

func TestDecodeEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 1000} {
		want := sample(n)
		got, err := Decode(mustEncode(t, want))
		if err != nil {
			t.Fatalf("Decode(Encode(sample(%d))) = %v", n, err)
		}
		if !equal(got, want) {
			t.Errorf("Decode(Encode(sample(%d))) = %+v, want %+v", n, got, want)
		}
		first := *want
		first.Previous = setid.ID{}
		got, err = Decode(mustEncode(t, &first))
		if err != nil || !got.Previous.IsZero() || !equal(got, &first) {
			t.Errorf("Decode(Encode(first set)) = %+v, %v", got, err)
		}
	}
}

// TestTextGolden pins the uncompressed text byte for byte: it is the format
// other implementations read (go test -update rewrites the golden file).
func TestTextGolden(t *testing.T) {
	t.Parallel()
	got := sample(3).text()
	golden := filepath.Join("testdata", "sample.txt")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("text() =\n%s\nwant (%s)\n%s", got, golden, want)
	}
}

func TestDecodeAcceptsOtherFraming(t *testing.T) {
	t.Parallel()
	m := sample(100)
	text := m.text()
	best, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression), zstd.WithEncoderCRC(false))
	if err != nil {
		t.Fatal(err)
	}
	half := len(text) / 2
	for name, data := range map[string][]byte{
		"best compression, no checksum": best.EncodeAll(text, nil),
		"two frames":                    append(compress(string(text[:half])), compress(string(text[half:]))...),
	} {
		got, err := Decode(data)
		if err != nil || !equal(got, m) {
			t.Errorf("Decode(%s) = %v, %v, want the sample", name, got, err)
		}
	}
}

func TestValidateRejects(t *testing.T) {
	e := func(p string) Entry { return Entry{Path: p, Size: 1, SHA256: digest.Sum([]byte(p)), Modified: id2} }
	tests := []struct {
		name   string
		modify func(m *Manifest)
	}{
		{"bad set name", func(m *Manifest) { m.Set = "../x" }},
		{"empty set name", func(m *Manifest) { m.Set = "" }},
		{"zero ID", func(m *Manifest) { m.ID = setid.ID{} }},
		{"previous equal to ID", func(m *Manifest) { m.Previous = m.ID }},
		{"previous after ID", func(m *Manifest) { m.Previous = setid.FromTime(created.Add(time.Hour)) }},
		{"expires before created", func(m *Manifest) { m.Expires = m.Created.Add(-time.Hour) }},
		{"expires equal to created", func(m *Manifest) { m.Expires = m.Created }},
		{"expires within the created second", func(m *Manifest) {
			m.Created = created.Add(100 * time.Millisecond)
			m.Expires = created.Add(900 * time.Millisecond)
		}},
		{"year 10000", func(m *Manifest) { m.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"year 0", func(m *Manifest) { m.Created = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) }},
		{"unsorted", func(m *Manifest) { m.Entries = []Entry{e("b"), e("a")} }},
		{"duplicate", func(m *Manifest) { m.Entries = []Entry{e("a"), e("a")} }},
		{"file and dir, adjacent", func(m *Manifest) { m.Entries = []Entry{e("a"), e("a/b")} }},
		{"file and dir, apart", func(m *Manifest) { m.Entries = []Entry{e("a"), e("a-b"), e("a.c"), e("a/c")} }},
		{"file and deep dir", func(m *Manifest) { m.Entries = []Entry{e("x/a"), e("x/a b"), e("x/a/b/c")} }},
		{"negative size", func(m *Manifest) { m.Entries[0].Size = -1 }},
		{"zero modified", func(m *Manifest) { m.Entries[0].Modified = setid.ID{} }},
		{"modified after ID", func(m *Manifest) { m.Entries[0].Modified = setid.FromTime(created.Add(time.Second)) }},
		{"dot-dot path", func(m *Manifest) { m.Entries = []Entry{e("../etc/passwd")} }},
		{"absolute path", func(m *Manifest) { m.Entries = []Entry{e("/etc/passwd")} }},
		{"reserved path", func(m *Manifest) { m.Entries = []Entry{e(".pkgcdn/manifest")} }},
		{"newline in path", func(m *Manifest) { m.Entries = []Entry{e("a\nb")} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := sample(3)
			tt.modify(m)
			if err := m.Validate(); err == nil {
				t.Errorf("Validate() = nil, want an error")
			}
			if b, err := m.Encode(); err == nil {
				t.Errorf("Encode() = %d bytes, nil, want an error", len(b))
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	t.Parallel()
	e := func(p string) Entry { return Entry{Path: p, Size: 0, SHA256: digest.Sum(nil), Modified: id2} }
	m := sample(0)
	// Siblings sharing a prefix are not file/dir conflicts.
	m.Entries = []Entry{e("a"), e("a-b/c"), e("a.d"), e("ab/c"), e("b/a"), e("b/a-"), e("b/ab")}
	m.Previous = setid.ID{}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate() = %v, want nil", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := string(sample(2).text())
	lines := strings.SplitAfter(good, "\n")
	head := strings.Join(lines[:7], "")
	entry := lines[7]
	// replace replaces old with new once in the good text.
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			panic("test bug: " + old + " not in the sample")
		}
		return strings.Replace(good, old, new, 1)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"not zstd", []byte(good)},
		{"truncated zstd", compress(good)[:len(compress(good))/2]},
		{"zstd then garbage", append(compress(good), "garbage"...)},
		{"empty text", compress("")},
		{"wrong header", compress(replace("pkgcdn-manifest v1", "pkgcdn-manifest v2"))},
		{"CRLF", compress(strings.ReplaceAll(good, "\n", "\r\n"))},
		{"CR in path", compress(strings.Replace(good, ".pkg\n", ".pkg\r\n", 1))},
		{"no final newline", compress(strings.TrimSuffix(good, "\n"))},
		{"blank line at end", compress(good + "\n")},
		{"missing files line", compress(strings.Join(lines[:6], ""))},
		{"fields out of order", compress(strings.Replace(good, "set ", "sot ", 1))},
		{"double space after key", compress(replace("set ", "set  "))},
		{"bad set name", compress(replace("set FreeBSD", "set ../FreeBSD"))},
		{"bad ID", compress(replace("id "+id2.String(), "id 2026-11-25"))},
		{"previous zero ID", compress(replace("previous "+id1.String(), "previous 19700101T000000Z"))},
		{"previous empty", compress(replace("previous "+id1.String(), "previous "))},
		{"created with offset", compress(replace("created 2026-11-25T03:15:00Z", "created 2026-11-25T04:15:00+01:00"))},
		{"created with fraction", compress(replace("created 2026-11-25T03:15:00Z", "created 2026-11-25T03:15:00.5Z"))},
		{"count plus sign", compress(replace("files 7", "files +7"))},
		{"count leading zero", compress(replace("files 7", "files 07"))},
		{"count negative", compress(replace("files 7", "files -7"))},
		{"count over limit", compress(replace("files 7", "files 99999999999"))},
		{"fewer entries than count", compress(replace("files 7", "files 8"))},
		{"more entries than count", compress(replace("files 7", "files 6"))},
		{"upper-case sha256", compress(head + strings.ToUpper(entry[:64]) + entry[64:])},
		{"size with plus", compress(replace(" 42 ", " +42 "))},
		{"size with leading zero", compress(replace(" 42 ", " 042 "))},
		{"size negative", compress(replace(" 42 ", " -42 "))},
		{"size overflow", compress(replace(" 42 ", " 99999999999999999999 "))},
		{"three fields", compress(head + entry[:strings.LastIndexByte(entry, ' ')] + "\n")},
		{"bad modified", compress(head + strings.Replace(entry, id1.String(), "yesterday", 1))},
		{"modified after ID", compress(replace(" "+id1.String()+" All/Hashed", " 20991231T000000Z All/Hashed"))},
		{"duplicate entry", compress(strings.Replace(head, "files 7", "files 2", 1) + entry + entry)},
		{"line too long", compress(head + strings.Replace(entry, "All/", "All/"+strings.Repeat("x", 2*1024), 1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.data)
			if !errors.Is(err, ErrMalformed) || m != nil {
				t.Errorf("Decode = %v, %v, want nil, ErrMalformed", m, err)
			}
		})
	}
	if _, err := Decode(compress(good)); err != nil {
		t.Errorf("Decode(the unmodified sample) = %v", err)
	}
}

// TestDecodeBombBounded feeds Decode a few KiB that decompress to a GiB: it
// must fail fast, decompressing and allocating only a bounded amount.
func TestDecodeBombBounded(t *testing.T) {
	// 1 GiB of zeros after a valid header: 128 frames of 8 MiB, each a
	// few hundred bytes.
	head := strings.Join(strings.SplitAfter(string(sample(0).text()), "\n")[:7], "")
	zeros := compress(string(make([]byte, 8<<20)))
	bomb := compress(head)
	for range 128 {
		bomb = append(bomb, zeros...)
	}
	t.Logf("bomb: %d bytes", len(bomb))

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m, err := Decode(bomb)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrMalformed) || m != nil {
		t.Errorf("Decode(bomb) = %v, %v, want nil, ErrMalformed", m, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("Decode(bomb) allocated %d MiB, want at most 64", alloc>>20)
	}
}

// TestDecodeStopsAtMaxDecodedBytes lowers the limit below a valid manifest's
// size: Decode must refuse it rather than return a truncated manifest.
func TestDecodeStopsAtMaxDecodedBytes(t *testing.T) {
	m := sample(2000)
	data := mustEncode(t, m)
	old := maxDecodedBytes
	t.Cleanup(func() { maxDecodedBytes = old })

	maxDecodedBytes = int64(len(m.text())) - 1
	if got, err := Decode(data); !errors.Is(err, ErrMalformed) || got != nil {
		t.Errorf("Decode(%d text bytes) with limit %d = %v, %v, want nil, ErrMalformed", len(m.text()), maxDecodedBytes, got, err)
	}
	maxDecodedBytes = int64(len(m.text()))
	if got, err := Decode(data); err != nil || !equal(got, m) {
		t.Errorf("Decode(%d text bytes) with limit %d = %v, want the manifest", len(m.text()), maxDecodedBytes, err)
	}
}

func TestDecodeConcurrent(t *testing.T) {
	t.Parallel()
	m := sample(500)
	data := mustEncode(t, m)
	errs := make(chan error, 8)
	for range cap(errs) {
		go func() {
			for range 20 {
				got, err := Decode(data)
				if err == nil && !equal(got, m) {
					err = errors.New("decoded a different manifest")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Decode: %v", err)
		}
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	m := sample(100)
	for _, want := range m.Entries {
		if got, ok := m.Lookup(want.Path); !ok || got != want {
			t.Errorf("Lookup(%q) = %v, %v, want %v, true", want.Path, got, ok, want)
		}
	}
	for _, p := range []string{"", "All", "All/", "all/pkg0000000-1.0.pkg", "zzz", "All/pkg0000000-1.0.pk", "All/pkg0000000-1.0.pkgx"} {
		if got, ok := m.Lookup(p); ok {
			t.Errorf("Lookup(%q) = %v, true, want false", p, got)
		}
	}
	if _, ok := sample(0).Lookup("meta.conf"); !ok {
		t.Error(`Lookup("meta.conf") in sample(0) = false, want true`)
	}
	if _, ok := (&Manifest{}).Lookup("x"); ok {
		t.Error(`Lookup on an empty manifest = true, want false`)
	}
}

func TestTotalSizeAndExpired(t *testing.T) {
	t.Parallel()
	m := sample(3) // sizes 0, 1000, 2000, plus 5 × 42
	if got := m.TotalSize(); got != 3000+5*42 {
		t.Errorf("TotalSize() = %d, want %d", got, 3000+5*42)
	}
	for _, tt := range []struct {
		now  time.Time
		want bool
	}{
		{m.Created, false},
		{m.Expires.Add(-time.Nanosecond), false},
		{m.Expires, true},
		{m.Expires.Add(time.Hour), true},
	} {
		if got := m.Expired(tt.now); got != tt.want {
			t.Errorf("Expired(%v) = %v, want %v", tt.now, got, tt.want)
		}
	}
}

// keys returns a signer and a verifier trusting only it.
func keys(t *testing.T) (*sign.Signer, *sign.Verifier) {
	t.Helper()
	prefix := filepath.Join(t.TempDir(), "k")
	pub, err := sign.GenerateKey(prefix)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestOpen(t *testing.T) {
	t.Parallel()
	signer, v := keys(t)
	other, _ := keys(t)
	m := sample(10)
	data, sig, err := m.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}

	otherSet := sample(10)
	otherSet.Set = "FreeBSD:14:amd64/quarterly"
	otherID := sample(10)
	otherID.ID = setid.FromTime(created.Add(time.Hour))
	otherExpiry := sample(10)
	otherExpiry.Expires = otherExpiry.Expires.Add(time.Hour)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	setsSig := signer.Sign(data, setsComment)
	garbage := []byte("not a manifest")

	now := created.Add(time.Hour)
	tests := []struct {
		name      string
		data, sig []byte
		wantErr   error
	}{
		{"good", data, sig, nil},
		{"unknown key", data, func() []byte { _, s, _ := m.Sign(other); return s }(), sign.ErrUnknownKey},
		{"tampered data", flipped, sig, sign.ErrBadSignature},
		{"truncated data", data[:len(data)-1], sig, sign.ErrBadSignature},
		{"tampered trusted comment", data, bytes.Replace(sig, []byte("set=FreeBSD:14:amd64/latest"), []byte("set=FreeBSD:14:amd64/quarter"), 1), sign.ErrBadSignature},
		{"comment of another set", data, signer.Sign(data, otherSet.TrustedComment()), ErrMismatch},
		{"comment of another ID", data, signer.Sign(data, otherID.TrustedComment()), ErrMismatch},
		{"comment of another expiry", data, signer.Sign(data, otherExpiry.TrustedComment()), ErrMismatch},
		{"SETS comment", data, setsSig, ErrMismatch},
		{"empty comment", data, signer.Sign(data, ""), ErrMismatch},
		{"signed garbage", garbage, signer.Sign(garbage, m.TrustedComment()), ErrMalformed},
		{"no signature", data, nil, sign.ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Open(tt.data, tt.sig, v, now)
			if tt.wantErr == nil {
				if err != nil || !equal(got, m) {
					t.Errorf("Open = %v, %v, want the manifest", got, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || got != nil {
				t.Errorf("Open = %v, %v, want nil, %v", got, err, tt.wantErr)
			}
		})
	}
}

func TestOpenExpiredReturnsManifest(t *testing.T) {
	t.Parallel()
	signer, v := keys(t)
	m := sample(5)
	data, sig, err := m.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	for _, now := range []time.Time{m.Expires, m.Expires.Add(24 * time.Hour)} {
		got, err := Open(data, sig, v, now)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("Open(now=%v) error = %v, want ErrExpired", now, err)
		}
		if got == nil || !equal(got, m) {
			t.Errorf("Open(now=%v) = %v, want the expired manifest alongside ErrExpired", now, got)
		}
	}
	if _, err := Open(data, sig, v, m.Expires.Add(-time.Second)); err != nil {
		t.Errorf("Open a second before expiry = %v, want nil", err)
	}
}

func TestTrustedComment(t *testing.T) {
	t.Parallel()
	want := "pkgcdn-manifest set=FreeBSD:14:amd64/latest id=20261125T031500Z expires=2026-12-25T03:15:00Z"
	if got := sample(0).TrustedComment(); got != want {
		t.Errorf("TrustedComment() = %q, want %q", got, want)
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	t.Parallel()
	signer, _ := keys(t)
	m := sample(1)
	m.Set = ""
	if _, _, err := m.Sign(signer); err == nil {
		t.Error("Sign(invalid manifest) = nil error, want one")
	}
}

func TestSets(t *testing.T) {
	t.Parallel()
	signer, v := keys(t)
	other, _ := keys(t)
	s := setid.Sets{}.With(setid.Entry{Set: "FreeBSD:14:amd64/latest", ID: id2, Manifest: digest.Sum([]byte("m"))})
	data, sig := SignSets(s, signer)
	if !bytes.Equal(data, s.Bytes()) {
		t.Errorf("SignSets data = %q, want %q", data, s.Bytes())
	}
	got, err := OpenSets(data, sig, v)
	if err != nil || !slices.Equal(got, s) {
		t.Errorf("OpenSets = %v, %v, want %v", got, err, s)
	}

	mdata, msig, err := sample(1).Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	_, otherSig := SignSets(s, other)
	badData := []byte("pkgcdn-sets v1\nx y z\n")
	tests := []struct {
		name      string
		data, sig []byte
		wantErr   error
	}{
		{"tampered", append(bytes.Clone(data), "x 20261125T031500Z 00\n"...), sig, sign.ErrBadSignature},
		{"unknown key", data, otherSig, sign.ErrUnknownKey},
		{"manifest signature", mdata, msig, ErrMismatch},
		{"manifest comment over SETS bytes", data, signer.Sign(data, sample(1).TrustedComment()), ErrMismatch},
		{"signed but malformed", badData, signer.Sign(badData, setsComment), setid.ErrBadSets},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got, err := OpenSets(tt.data, tt.sig, v); !errors.Is(err, tt.wantErr) || got != nil {
				t.Errorf("OpenSets = %v, %v, want nil, %v", got, err, tt.wantErr)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, n := range []int{0, 1, 3} {
		m := sample(n)
		f.Add(mustEncode(f, m))
		f.Add(m.text())
	}
	f.Add([]byte("pkgcdn-manifest v1\nset a\nid 20261125T031500Z\nprevious -\ncreated 2026-11-25T03:15:00Z\nexpires 2026-12-25T03:15:00Z\nfiles 1\n" +
		digest.Sum(nil).String() + " 0 20261125T031500Z a b\n"))
	f.Add([]byte{})
	f.Add([]byte("\x28\xb5\x2f\xfd"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// Both ways in: as compressed bytes, and as the text itself (the
		// fuzzer rarely makes valid zstd, so most coverage comes from here).
		check := func(how string, m *Manifest, err error, canonical []byte) {
			if err != nil {
				if !errors.Is(err, ErrMalformed) || m != nil {
					t.Fatalf("%s(%q) = %v, %v: want nil, ErrMalformed", how, data, m, err)
				}
				return
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("%s(%q) accepted an invalid manifest: %v", how, data, err)
			}
			if canonical != nil && !bytes.Equal(m.text(), canonical) {
				t.Fatalf("%s(%q) accepted non-canonical text; canonical is %q", how, data, m.text())
			}
			enc, err := m.Encode()
			if err != nil {
				t.Fatalf("%s(%q) accepted a manifest Encode refuses: %v", how, data, err)
			}
			m2, err := Decode(enc)
			if err != nil || !equal(m, m2) {
				t.Fatalf("%s(%q): Decode(Encode(m)) = %v, %v, want %v", how, data, m2, err, m)
			}
		}
		m, err := Decode(data)
		check("Decode", m, err, nil)
		m, err = parse(bytes.NewReader(data))
		check("parse", m, err, data)
	})
}
