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
// cron can use it unattended) and prefix.pub (mode 0644), both in the format
// of the stock minisign tool, and returns the public key's base64 text. It
// refuses to overwrite either file.
func GenerateKey(prefix string) (pub string, err error) {
	pk, sk, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	skText, err := sk.MarshalText()
	if err != nil {
		return "", err
	}
	for _, p := range []string{prefix + ".key", prefix + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return "", fmt.Errorf("%s exists; refusing to overwrite a key", p)
		}
	}
	// pk.MarshalText carries its own comment line; a second one would make
	// the file unreadable by minisign (and by NewVerifier), so build it here.
	pubFile := fmt.Sprintf("untrusted comment: minisign public key %016X\n%s\n", pk.ID(), pk.String())
	if err := atomicfile.WriteFile(prefix+".key", append(skText, '\n'), 0o600); err != nil {
		return "", err
	}
	if err := atomicfile.WriteFile(prefix+".pub", []byte(pubFile), 0o644); err != nil {
		// A private key without its public half is useless and would make a
		// rerun refuse to overwrite it.
		return "", errors.Join(err, os.Remove(prefix+".key"))
	}
	return pk.String(), nil
}

// LoadSigner reads an unencrypted minisign private key file (as written by
// GenerateKey or `minisign -G -W`). An encrypted key is refused.
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
func (s *Signer) KeyID() string { return fmt.Sprintf("%016X", s.key.ID()) }

// Public returns the public key's base64 text (the second line of a .pub file).
func (s *Signer) Public() string {
	pk, _ := s.key.Public().(minisign.PublicKey)
	return pk.String()
}

// Sign returns the .minisig file for msg with the given trusted comment. The
// comment is one line: CR and LF are replaced by spaces, since a .minisig
// file cannot carry them (minisign strips a trailing CR, which would break
// the comment's signature).
func (s *Signer) Sign(msg []byte, trustedComment string) []byte {
	// The prehashed (BLAKE2b) form is what `minisign -S` makes by default.
	r := minisign.NewReader(bytes.NewReader(msg))
	_, _ = io.Copy(io.Discard, r) // reading a bytes.Reader cannot fail
	untrusted := "signature from pkgcdn key " + s.KeyID()
	return r.SignWithComments(s.key, oneLine.Replace(trustedComment), untrusted)
}

var oneLine = strings.NewReplacer("\r", " ", "\n", " ")

// Verifier checks signatures against a fixed set of trusted public keys.
// It is safe for concurrent use.
type Verifier struct {
	keys map[uint64]minisign.PublicKey
}

// NewVerifier returns a Verifier trusting the given public keys. Each is the
// base64 text of a key (as `minisign -P` takes it, surrounding white space
// ignored), the text of a .pub file, or the name of a .pub file (with or
// without its "untrusted comment:" line).
func NewVerifier(keys ...string) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("no trusted public key configured")
	}
	v := &Verifier{keys: make(map[uint64]minisign.PublicKey)}
	for _, k := range keys {
		pk, err := parsePublicKey([]byte(k))
		if err != nil {
			b, ferr := os.ReadFile(k)
			if ferr != nil {
				return nil, fmt.Errorf("trusted key %q: neither a public key (%v) nor a readable file: %w", k, err, ferr)
			}
			if pk, err = parsePublicKey(b); err != nil {
				return nil, fmt.Errorf("trusted key file %s: %w", k, err)
			}
		}
		if old, ok := v.keys[pk.ID()]; ok && !old.Equal(pk) {
			// Signatures name their key by ID only: two trusted keys
			// with one ID would make one of them silently useless.
			return nil, fmt.Errorf("trusted keys %q and %s share key ID %016X", k, old.String(), pk.ID())
		}
		v.keys[pk.ID()] = pk
	}
	return v, nil
}

// maxPublicKeyBytes bounds a public key's text: a comment line and 56 base64 bytes.
const maxPublicKeyBytes = 4096

// parsePublicKey reads a key's base64 text, optionally preceded by
// "untrusted comment:" lines and followed by more lines (minisign ignores
// them too); white space around each line does not matter.
func parsePublicKey(b []byte) (minisign.PublicKey, error) {
	var pk minisign.PublicKey
	if len(b) > maxPublicKeyBytes {
		return pk, errors.New("public key too long")
	}
	// The key is the first line that is not a comment. (Skipping more than
	// one comment line also reads the .pub files of earlier pkgcdn versions,
	// which wrote two.)
	var first string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "untrusted comment:") {
			first = line
			break
		}
	}
	if first == "" {
		return pk, errors.New("no public key")
	}
	if err := pk.UnmarshalText([]byte(first)); err != nil {
		return pk, err
	}
	return pk, nil
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
