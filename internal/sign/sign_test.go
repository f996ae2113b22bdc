package sign

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// newKey generates a key pair in a temp dir and returns its prefix and signer.
func newKey(t *testing.T) (prefix string, s *Signer) {
	t.Helper()
	prefix = filepath.Join(t.TempDir(), "pkgcdn")
	if _, err := GenerateKey(prefix); err != nil {
		t.Fatalf("GenerateKey = %v", err)
	}
	s, err := LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatalf("LoadSigner = %v", err)
	}
	return prefix, s
}

func TestGenerateKeyFiles(t *testing.T) {
	t.Parallel()
	prefix := filepath.Join(t.TempDir(), "k")
	pub, err := GenerateKey(prefix)
	if err != nil {
		t.Fatalf("GenerateKey(%q) = %v", prefix, err)
	}
	for _, f := range []struct {
		suffix string
		perm   os.FileMode
	}{{".key", 0o600}, {".pub", 0o644}} {
		fi, err := os.Stat(prefix + f.suffix)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != f.perm {
			t.Errorf("mode of %s = %v, want %v", f.suffix, fi.Mode().Perm(), f.perm)
		}
	}
	// The .pub file is exactly what `minisign -G` writes: one comment
	// line naming the key ID, then the key.
	b, err := os.ReadFile(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	want := "untrusted comment: minisign public key " + s.KeyID() + "\n" + pub + "\n"
	if string(b) != want {
		t.Errorf(".pub file = %q, want %q", b, want)
	}
	if s.Public() != pub {
		t.Errorf("Public() = %q, want %q", s.Public(), pub)
	}
	if len(s.KeyID()) != 16 || strings.ToUpper(s.KeyID()) != s.KeyID() {
		t.Errorf("KeyID() = %q, want 16 upper-case hex digits", s.KeyID())
	}
}

func TestGenerateKeyRefusesOverwrite(t *testing.T) {
	for _, existing := range []string{".key", ".pub"} {
		t.Run(existing, func(t *testing.T) {
			t.Parallel()
			prefix := filepath.Join(t.TempDir(), "k")
			if err := os.WriteFile(prefix+existing, []byte("precious"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := GenerateKey(prefix); err == nil {
				t.Errorf("GenerateKey with an existing %s = nil, want an error", existing)
			}
			if b, _ := os.ReadFile(prefix + existing); string(b) != "precious" {
				t.Errorf("%s after refused GenerateKey = %q, want it untouched", existing, b)
			}
			ents, _ := os.ReadDir(filepath.Dir(prefix))
			if len(ents) != 1 {
				t.Errorf("dir after refused GenerateKey holds %d files, want 1", len(ents))
			}
		})
	}
}

func TestLoadSignerErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	prefix, _ := newKey(t)
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("untrusted comment: x\nnot base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(dir, "missing.key"), bad, prefix + ".pub"} {
		if s, err := LoadSigner(path); err == nil {
			t.Errorf("LoadSigner(%s) = %v, nil, want an error", path, s)
		}
	}
}

func TestNewVerifierKeyForms(t *testing.T) {
	t.Parallel()
	prefix, s := newKey(t)
	pubFile, err := os.ReadFile(prefix + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		key  string
	}{
		{"base64 text", s.Public()},
		{"base64 text with white space", "  " + s.Public() + "\n"},
		{".pub file with comment", prefix + ".pub"},
		{".pub file text", string(pubFile)},
		{".pub file without comment", write("bare.pub", s.Public()+"\n")},
		{".pub file with CRLF", write("crlf.pub", strings.ReplaceAll(string(pubFile), "\n", "\r\n"))},
		{".pub file without final newline", write("nonl.pub", strings.TrimSuffix(string(pubFile), "\n"))},
		{"stock minisign comment", write("stock.pub", "untrusted comment: minisign public key "+s.KeyID()+"\n"+s.Public()+"\n")},
		{"two comment lines (pkgcdn before the fix)", write("old.pub", "untrusted comment: pkgcdn public key X\nuntrusted comment: minisign public key: X\n"+s.Public()+"\n")},
		{"blank line before the key", write("blank.pub", "untrusted comment: x\n\n"+s.Public()+"\n")},
	}
	sig := s.Sign([]byte("msg"), "tc")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tt.key)
			if err != nil {
				t.Fatalf("NewVerifier(%q) = %v", tt.key, err)
			}
			if tc, err := v.Verify([]byte("msg"), sig); err != nil || tc != "tc" {
				t.Errorf("Verify = %q, %v, want %q, nil", tc, err, "tc")
			}
		})
	}
}

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pub")
	if err := os.WriteFile(garbage, []byte("untrusted comment: x\nRWQ\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, keys := range [][]string{
		nil,
		{""},
		{"RWQ"},
		{filepath.Join(dir, "missing.pub")},
		{garbage},
		{"untrusted comment: only a comment\n"},
	} {
		if v, err := NewVerifier(keys...); err == nil {
			t.Errorf("NewVerifier(%q) = %v, nil, want an error", keys, v)
		}
	}
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	_, s := newKey(t)
	_, other := newKey(t)
	v, err := NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("pkgcdn-manifest v1\nset a\n")
	const tc = "pkgcdn-manifest set=a id=20261125T031500Z"
	sig := s.Sign(msg, tc)

	tamperedComment := bytes.Replace(sig, []byte("set=a"), []byte("set=b"), 1)
	if bytes.Equal(tamperedComment, sig) {
		t.Fatal("test bug: comment not found in signature")
	}
	tests := []struct {
		name    string
		msg     []byte
		sig     []byte
		wantErr error
	}{
		{"good", msg, sig, nil},
		{"tampered message", append(bytes.Clone(msg), 'x'), sig, ErrBadSignature},
		{"flipped message bit", func() []byte { m := bytes.Clone(msg); m[3] ^= 1; return m }(), sig, ErrBadSignature},
		{"tampered trusted comment", msg, tamperedComment, ErrBadSignature},
		{"other key", msg, other.Sign(msg, tc), ErrUnknownKey},
		{"empty signature", msg, nil, ErrBadSignature},
		{"garbage signature", msg, []byte("untrusted comment: x\nAAAA\ntrusted comment: y\nAAAA\n"), ErrBadSignature},
		{"oversized signature", msg, append(bytes.Clone(sig), bytes.Repeat([]byte(" "), MaxSignatureBytes)...), ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := v.Verify(tt.msg, tt.sig)
			if tt.wantErr == nil {
				if err != nil || got != tc {
					t.Errorf("Verify = %q, %v, want %q, nil", got, err, tc)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || got != "" {
				t.Errorf("Verify = %q, %v, want \"\", %v", got, err, tt.wantErr)
			}
		})
	}
}

func TestVerifierTrustsSeveralKeys(t *testing.T) {
	t.Parallel()
	_, a := newKey(t)
	_, b := newKey(t)
	v, err := NewVerifier(a.Public(), b.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*Signer{a, b} {
		if _, err := v.Verify([]byte("m"), s.Sign([]byte("m"), "c")); err != nil {
			t.Errorf("Verify(signed by %s) = %v", s.KeyID(), err)
		}
	}
}

func TestSignFlattensCommentToOneLine(t *testing.T) {
	t.Parallel()
	_, s := newKey(t)
	v, err := NewVerifier(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []string{"a\nb", "a\rb", "a\r\n", "trailing\r"} {
		sig := s.Sign([]byte("m"), tc)
		want := strings.NewReplacer("\r", " ", "\n", " ").Replace(tc)
		if got, err := v.Verify([]byte("m"), sig); err != nil || got != want {
			t.Errorf("Verify(Sign(m, %q)) = %q, %v, want %q, nil", tc, got, err, want)
		}
	}
}

func TestSignIsDeterministic(t *testing.T) {
	t.Parallel()
	_, s := newKey(t)
	if a, b := s.Sign([]byte("m"), "c"), s.Sign([]byte("m"), "c"); !bytes.Equal(a, b) {
		t.Errorf("Sign twice = %q and %q, want equal", a, b)
	}
}

// minisignBin returns the stock minisign tool, failing (not skipping) the
// test if it is missing: interop is a requirement, not an option.
func minisignBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatalf("the stock minisign tool is required for interop tests (apt-get install minisign): %v", err)
	}
	return p
}

// TestStockMinisignInterop checks our keys and signatures against the stock
// tool both ways: it verifies what we sign with our .pub file, and it signs
// with our .key file something we verify.
func TestStockMinisignInterop(t *testing.T) {
	t.Parallel()
	bin := minisignBin(t)
	prefix, s := newKey(t)
	dir := t.TempDir()
	msg := filepath.Join(dir, "msg")
	if err := os.WriteFile(msg, []byte("hello pkgcdn\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	t.Run("stock tool verifies our signature", func(t *testing.T) {
		const tc = "pkgcdn-test set=x id=20261125T031500Z"
		if err := os.WriteFile(msg+".minisig", s.Sign([]byte("hello pkgcdn\n"), tc), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(t.Context(), bin, "-V", "-p", prefix+".pub", "-m", msg, "-x", msg+".minisig").CombinedOutput()
		if err != nil {
			t.Fatalf("minisign -V: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "Trusted comment: "+tc) {
			t.Errorf("minisign -V output = %q, want the trusted comment %q", out, tc)
		}
	})

	t.Run("we verify the stock tool's signature with our key", func(t *testing.T) {
		sig := filepath.Join(dir, "stock.minisig")
		out, err := exec.CommandContext(t.Context(), bin, "-S", "-s", prefix+".key", "-m", msg, "-x", sig, "-t", "signed by stock").CombinedOutput()
		if err != nil {
			t.Fatalf("minisign -S with our key: %v\n%s", err, out)
		}
		b, err := os.ReadFile(sig)
		if err != nil {
			t.Fatal(err)
		}
		v, err := NewVerifier(prefix + ".pub")
		if err != nil {
			t.Fatal(err)
		}
		if tc, err := v.Verify([]byte("hello pkgcdn\n"), b); err != nil || tc != "signed by stock" {
			t.Errorf("Verify(stock signature) = %q, %v, want %q, nil", tc, err, "signed by stock")
		}
	})
}

func TestNewVerifierKeyIDCollision(t *testing.T) {
	t.Parallel()
	_, s := newKey(t)
	raw, err := base64.StdEncoding.DecodeString(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 1 // same algorithm and key ID, other key bytes
	twin := base64.StdEncoding.EncodeToString(raw)
	if v, err := NewVerifier(s.Public(), twin); err == nil {
		t.Errorf("NewVerifier(two keys with one ID) = %v, nil, want an error", v)
	}
	if _, err := NewVerifier(s.Public(), s.Public()); err != nil {
		t.Errorf("NewVerifier(the same key twice) = %v, want nil", err)
	}
}
