// Package sign is pkgcdn's only importer of aead.dev/minisign: it creates and
// loads keys, signs bytes with a trusted comment, and verifies signatures
// against a configured set of trusted public keys. Signatures are
// minisign-compatible (prehashed Ed25519), so the stock `minisign -V` tool
// checks every manifest and SETS file pkgcdn writes.
package sign

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"aead.dev/minisign"

	"github.com/pkgcdn/pkgcdn/internal/atomicfile"
)

// ErrUnknownKey means the signature was made by a key that is not trusted.
var ErrUnknownKey = errors.New("signature by an untrusted key")

// ErrBadSignature means the signature is malformed or does not match the bytes.
var ErrBadSignature = errors.New("invalid signature")

// MaxSignatureBytes bounds a .minisig file accepted from the network.
const MaxSignatureBytes = 4096

// Signer signs with one private key. It is safe for concurrent use.
type Signer struct {
	key minisign.PrivateKey
}

// GenerateKey writes a new unencrypted key pair: prefix.key (mode 0600, so
// cron can use it unattended) and prefix.pub. It refuses to overwrite either.
func GenerateKey(prefix string) (pub string, err error) {
	pk, sk, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	skText, err := sk.MarshalText()
	if err != nil {
		return "", err
	}
	pkText, err := pk.MarshalText()
	if err != nil {
		return "", err
	}
	for _, p := range []string{prefix + ".key", prefix + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("%s exists; refusing to overwrite a key", p)
		}
	}
	pubFile := fmt.Sprintf("untrusted comment: pkgcdn public key %X\n%s\n", pk.ID(), pkText)
	if err := atomicfile.WriteFile(prefix+".key", append(skText, '\n'), 0o600); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(prefix+".pub", []byte(pubFile), 0o644); err != nil {
		return "", err
	}
	return pk.String(), nil
}

// LoadSigner reads an unencrypted minisign private key file.
func LoadSigner(path string) (*Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var sk minisign.PrivateKey
	if err := sk.UnmarshalText(b); err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return &Signer{key: sk}, nil
}

// KeyID returns the signing key's ID as minisign prints it.
func (s *Signer) KeyID() string { return fmt.Sprintf("%X", s.key.ID()) }

// Public returns the public key's base64 text (the second line of a .pub file).
func (s *Signer) Public() string {
	pk, _ := s.key.Public().(minisign.PublicKey)
	return pk.String()
}

// Sign returns the .minisig file for msg with the given trusted comment
// (one line, no newline).
func (s *Signer) Sign(msg []byte, trustedComment string) []byte {
	// The prehashed (BLAKE2b) form is what `minisign -S` makes by default.
	r := minisign.NewReader(bytes.NewReader(msg))
	_, _ = io.Copy(io.Discard, r) // reading a bytes.Reader cannot fail
	untrusted := "signature from pkgcdn key " + s.KeyID()
	return r.SignWithComments(s.key, strings.ReplaceAll(trustedComment, "\n", " "), untrusted)
}

// Verifier checks signatures against a fixed set of trusted public keys.
// It is safe for concurrent use.
type Verifier struct {
	keys map[uint64]minisign.PublicKey
}

// NewVerifier returns a Verifier trusting the public keys in the given files
// (minisign .pub format) or given directly as their base64 text.
func NewVerifier(keys ...string) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("no trusted public key configured")
	}
	v := &Verifier{keys: make(map[uint64]minisign.PublicKey)}
	for _, k := range keys {
		var pk minisign.PublicKey
		if err := pk.UnmarshalText([]byte(k)); err != nil {
			var ferr error
			pk, ferr = minisign.PublicKeyFromFile(k)
			if ferr != nil {
				return nil, fmt.Errorf("trusted key %s: %w", k, ferr)
			}
		}
		v.keys[pk.ID()] = pk
	}
	return v, nil
}

// Verify checks sig (a .minisig file) over msg and returns its trusted comment.
// The key must be one of v's; a valid signature by any other key is
// ErrUnknownKey.
func (v *Verifier) Verify(msg, sig []byte) (trustedComment string, err error) {
	if len(sig) > MaxSignatureBytes {
		return "", fmt.Errorf("%w: over %d bytes", ErrBadSignature, MaxSignatureBytes)
	}
	var s minisign.Signature
	if err := s.UnmarshalText(sig); err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	pk, ok := v.keys[s.KeyID]
	if !ok {
		return "", fmt.Errorf("%w (key ID %X)", ErrUnknownKey, s.KeyID)
	}
	if !minisign.Verify(pk, msg, sig) {
		return "", ErrBadSignature
	}
	return s.TrustedComment, nil
}
