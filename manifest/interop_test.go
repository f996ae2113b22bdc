package manifest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
)

// The stock minisign tool (Debian package minisign) is part of the contract:
// anyone must be able to check a manifest or SETS file with it, and a
// manifest it signs must open here. These tests fail, never skip, without it.

// fixtureDir holds a manifest signed by the stock minisign tool, with the key
// pair that signed it. The secret key (minisign.key, unencrypted) is a test
// fixture only, committed so the fixture can be regenerated and extended;
// it signs nothing else. Regenerate with: go test ./manifest -run Stock -update
var fixtureDir = filepath.Join("testdata", "minisign")

func minisignBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatalf("the stock minisign tool is required for interop tests (apt-get install minisign): %v", err)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStockMinisignVerifiesOurs signs a manifest and a SETS file with our
// sign package and checks them with `minisign -V`, whose output must show
// the trusted comment.
func TestStockMinisignVerifiesOurs(t *testing.T) {
	t.Parallel()
	bin := minisignBin(t)
	dir := t.TempDir()
	prefix := filepath.Join(dir, "key")
	if _, err := sign.GenerateKey(prefix); err != nil {
		t.Fatal(err)
	}
	signer, err := sign.LoadSigner(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}

	m := sample(50)
	data, sig, err := m.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	sets := setid.Sets{}.With(setid.Entry{Set: m.Set, ID: m.ID, Manifest: digest.Sum(data)})
	setsData, setsSig := SignSets(sets, signer)

	for _, tt := range []struct {
		name      string
		data, sig []byte
		comment   []string // must appear in the trusted comment minisign prints
	}{
		{"manifest", data, sig, []string{"set=" + m.Set, "id=" + m.ID.String(), m.TrustedComment()}},
		{"SETS", setsData, setsSig, []string{setsComment}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(dir, tt.name)
			writeFile(t, file, tt.data)
			writeFile(t, file+".minisig", tt.sig)
			out := run(t, bin, "-V", "-p", prefix+".pub", "-m", file, "-x", file+".minisig")
			var tc string
			for _, line := range strings.Split(out, "\n") {
				if c, ok := strings.CutPrefix(line, "Trusted comment: "); ok {
					tc = c
				}
			}
			for _, want := range tt.comment {
				if !strings.Contains(tc, want) {
					t.Errorf("minisign -V trusted comment = %q, want it to contain %q (output %q)", tc, want, out)
				}
			}

			// And a tampered file fails there too.
			writeFile(t, file, append(bytes.Clone(tt.data), '\n'))
			cmd := exec.CommandContext(t.Context(), bin, "-V", "-p", prefix+".pub", "-m", file, "-x", file+".minisig")
			if out, err := cmd.CombinedOutput(); err == nil {
				t.Errorf("minisign -V of a tampered %s succeeded: %s", tt.name, out)
			}
		})
	}
}

// fixtureManifest is the manifest in fixtureDir.
func fixtureManifest() *Manifest { return sample(3) }

// updateStockFixture makes a fresh key pair with the stock tool and signs
// fixtureManifest with it.
func updateStockFixture(t *testing.T, bin string) {
	t.Helper()
	tmp := t.TempDir()
	run(t, bin, "-G", "-W", "-p", filepath.Join(tmp, "minisign.pub"), "-s", filepath.Join(tmp, "minisign.key"))
	m := fixtureManifest()
	writeFile(t, filepath.Join(tmp, "manifest"), mustEncode(t, m))
	run(t, bin, "-S", "-s", filepath.Join(tmp, "minisign.key"), "-m", filepath.Join(tmp, "manifest"),
		"-x", filepath.Join(tmp, "manifest.minisig"), "-t", m.TrustedComment())
	if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"minisign.pub", "minisign.key", "manifest", "manifest.minisig"} {
		b, err := os.ReadFile(filepath.Join(tmp, name))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(fixtureDir, name), b)
	}
}

// TestStockMinisignSignedFixtureOpens opens a manifest signed by `minisign -S`
// with our Verifier, given the key as a .pub file and as its base64 text.
func TestStockMinisignSignedFixtureOpens(t *testing.T) {
	t.Parallel()
	bin := minisignBin(t)
	if *update {
		updateStockFixture(t, bin)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(fixtureDir, name))
		if err != nil {
			t.Fatalf("fixture (regenerate with -update): %v", err)
		}
		return b
	}
	data, sig, pub := read("manifest"), read("manifest.minisig"), read("minisign.pub")
	if !bytes.Contains(sig, []byte("signature from minisign secret key")) {
		t.Errorf("fixture signature %q was not made by the stock tool", sig)
	}

	// The stock tool agrees the fixture is good.
	out := run(t, bin, "-V", "-p", filepath.Join(fixtureDir, "minisign.pub"), "-m", filepath.Join(fixtureDir, "manifest"))
	if !strings.Contains(out, fixtureManifest().TrustedComment()) {
		t.Errorf("minisign -V output = %q, want the manifest's trusted comment", out)
	}

	lines := strings.Split(strings.TrimSpace(string(pub)), "\n")
	for _, key := range []string{filepath.Join(fixtureDir, "minisign.pub"), lines[len(lines)-1]} {
		v, err := sign.NewVerifier(key)
		if err != nil {
			t.Fatalf("NewVerifier(%q) = %v", key, err)
		}
		m, err := Open(data, sig, v, fixtureManifest().Created)
		if err != nil {
			t.Fatalf("Open(stock-signed fixture) = %v", err)
		}
		if want := fixtureManifest(); !equal(m, want) {
			t.Errorf("Open(stock-signed fixture) = %+v, want %+v", m, want)
		}
	}

	// Our signer can use the stock tool's key file too.
	s, err := sign.LoadSigner(filepath.Join(fixtureDir, "minisign.key"))
	if err != nil {
		t.Fatalf("LoadSigner(stock key) = %v", err)
	}
	v, err := sign.NewVerifier(filepath.Join(fixtureDir, "minisign.pub"))
	if err != nil {
		t.Fatal(err)
	}
	d2, s2, err := fixtureManifest().Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(d2, s2, v, fixtureManifest().Created); err != nil {
		t.Errorf("Open(signed with the stock key by us) = %v", err)
	}
}
