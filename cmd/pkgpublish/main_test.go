package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

const set = "FreeBSD:14:amd64/latest"

// pkgpublish runs the command in-process and returns its exit code, stdout
// and stderr.
func pkgpublish(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(t.Context(), append([]string{"pkgpublish"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := pkgpublish(t, args...)
	if code != 0 {
		t.Fatalf("pkgpublish %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out
}

func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

type fixture struct {
	dir, root, src, key, pub, cache string
}

func newFixture(t *testing.T) fixture {
	d := t.TempDir()
	f := fixture{dir: d, root: filepath.Join(d, "root"), src: filepath.Join(d, "src"),
		key: filepath.Join(d, "k.key"), pub: filepath.Join(d, "k.pub"), cache: filepath.Join(d, "hc")}
	if err := os.Mkdir(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	// Defaults under $XDG_CACHE_HOME (the seen-IDs file) stay in the test.
	t.Setenv("XDG_CACHE_HOME", filepath.Join(d, "xdg"))
	out := mustRun(t, "keygen", "--out", filepath.Join(d, "k"))
	if pub, _ := os.ReadFile(f.pub); !strings.Contains(string(pub), strings.TrimSpace(out)) || strings.TrimSpace(out) == "" {
		t.Fatalf("keygen printed %q, not the key in k.pub:\n%s", out, pub)
	}
	if fi, err := os.Stat(f.key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("k.key: %v, mode %v; want 0600", err, fi.Mode())
	}
	return f
}

func (f fixture) publish(t *testing.T) setid.ID {
	t.Helper()
	out := mustRun(t, "publish", "--root", f.root, "--set", set, "--key", f.key, "--hash-cache", f.cache, f.src)
	id, err := setid.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("publish printed %q, want only a set ID", out)
	}
	return id
}

func TestPublishListVerify(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"All/a.pkg": "aaaa", "meta.conf": "m"})
	id1 := f.publish(t)
	if id := f.publish(t); id != id1 {
		t.Errorf("no-change republish printed %s, want the live %s", id, id1)
	}
	writeTree(t, f.src, map[string]string{"All/b.pkg": "bbbb"})
	id2 := f.publish(t)
	if !id2.After(id1) {
		t.Fatalf("second publish %s not after %s", id2, id1)
	}

	out := mustRun(t, "list", "--root", f.root)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], id1.String()) || !strings.Contains(lines[2], id2.String()) ||
		!strings.Contains(lines[2], " * ") || strings.Contains(lines[1], " * ") {
		t.Fatalf("list:\n%s", out)
	}
	if !strings.Contains(lines[2], "  3  ") || !strings.Contains(lines[2], "  9  ") {
		t.Errorf("list: want 3 files, 9 bytes for the live set:\n%s", out)
	}

	out = mustRun(t, "verify", "--root", f.root, "--pubkey", f.pub)
	if !strings.HasPrefix(out, "OK "+set+" "+id2.String()) {
		t.Errorf("verify:\n%s", out)
	}
}

func TestVerifyNamesTamperedObject(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"All/a.pkg": "aaaa", "All/b.pkg": "bbbb"})
	id := f.publish(t)
	root, err := layout.Open(f.root)
	if err != nil {
		t.Fatal(err)
	}
	obj := root.ObjectPath(digest.Sum([]byte("bbbb")))
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("evil"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := pkgpublish(t, "verify", "--root", f.root, "--pubkey", f.pub, "--set", set)
	want := "FAIL " + set + " " + id.String() + " All/b.pkg: sha256: want " + digest.Sum([]byte("bbbb")).String() +
		", got " + digest.Sum([]byte("evil")).String()
	if code != exitVerify || !strings.Contains(out, want) {
		t.Fatalf("verify = exit %d\n%s\nwant exit %d and %q", code, out, exitVerify, want)
	}
	if strings.Contains(out, "a.pkg") {
		t.Errorf("verify names an intact file:\n%s", out)
	}
	// A file cut short: the size is reported.
	if err := os.WriteFile(obj, []byte("b"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ = pkgpublish(t, "verify", "--root", f.root, "--pubkey", f.pub)
	if code != exitVerify || !strings.Contains(out, "All/b.pkg: size: want 4, got 1") {
		t.Fatalf("verify = exit %d\n%s", code, out)
	}
	// Another key: the manifest signature is refused.
	other := filepath.Join(f.dir, "other")
	mustRun(t, "keygen", "--out", other)
	if code, out, _ := pkgpublish(t, "verify", "--root", f.root, "--pubkey", other+".pub"); code != exitVerify ||
		!strings.Contains(out, "untrusted key") {
		t.Fatalf("verify with another key = exit %d\n%s", code, out)
	}
}

func TestRollbackAndGC(t *testing.T) {
	f := newFixture(t)
	var ids []setid.ID
	for i, c := range []string{"v1", "v2", "v3", "v4"} {
		writeTree(t, f.src, map[string]string{"All/p.pkg": c, "meta.conf": "m"})
		ids = append(ids, f.publish(t))
		if i > 0 && !ids[i].After(ids[i-1]) {
			t.Fatalf("IDs not increasing: %v", ids)
		}
	}
	out := mustRun(t, "rollback", "--root", f.root, "--set", set, "--to", ids[0].String(), "--key", f.key)
	rb, err := setid.Parse(strings.TrimSpace(out))
	if err != nil || !rb.After(ids[3]) {
		t.Fatalf("rollback printed %q, want a new ID after %s", out, ids[3])
	}
	root, _ := layout.Open(f.root)
	data, _, err := root.Manifest(set, rb)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := manifest.Decode(data)
	if e, _ := m.Lookup("All/p.pkg"); e.SHA256 != digest.Sum([]byte("v1")) || e.Modified != rb {
		t.Errorf("rollback set: p.pkg %+v, want v1's bytes modified at %s", e, rb)
	}

	// Dry run removes nothing; --grace 1s with --keep 2 then removes the
	// oldest sets (IDs are a second apart at least, all older than now - 1s
	// once their successor replaced them... except those within the grace).
	out = mustRun(t, "gc", "--root", f.root, "--keep", "2", "--grace", "1s", "--dry-run")
	if !strings.Contains(out, "dry run") {
		t.Errorf("gc --dry-run:\n%s", out)
	}
	if got, _ := root.SetIDs(set); len(got) != 5 {
		t.Fatalf("dry run removed sets: %v", got)
	}
	code, out, errs := pkgpublish(t, "gc", "--root", f.root, "--keep", "2", "--grace", "1s")
	if code != 0 {
		t.Fatalf("gc: exit %d\n%s%s", code, out, errs)
	}
	got, _ := root.SetIDs(set)
	if len(got) < 2 || got[len(got)-1] != rb {
		t.Fatalf("after gc: %v; want the live rollback set kept", got)
	}
	mustRun(t, "verify", "--root", f.root, "--pubkey", f.pub)
}

func TestUsageErrors(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"a": "1"})
	hostile := filepath.Join(f.dir, "hostile")
	writeTree(t, hostile, map[string]string{"a": "1"})
	if err := os.Symlink("/etc/passwd", filepath.Join(hostile, "passwd")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no target", []string{"publish", "--set", set, "--key", f.key, f.src}, exitUsage},
		{"two targets", []string{"publish", "--root", f.root, "--master", "http://127.0.0.1:1", "--set", set, "--key", f.key, f.src}, exitUsage},
		{"bad set name", []string{"publish", "--root", f.root, "--set", "../x", "--key", f.key, f.src}, exitUsage},
		{"no srcdir", []string{"publish", "--root", f.root, "--set", set, "--key", f.key}, exitUsage},
		{"unknown flag", []string{"publish", "--frobnicate"}, exitUsage},
		{"bad valid", []string{"publish", "--root", f.root, "--set", set, "--key", f.key, "--valid", "soon", f.src}, exitUsage},
		{"bad log format", []string{"--log-format", "xml", "list", "--root", f.root}, exitUsage},
		{"bad rollback id", []string{"rollback", "--root", f.root, "--set", set, "--key", f.key, "--to", "yesterday"}, exitUsage},
		{"refresh, two targets", []string{"refresh", "--root", f.root, "--master", "http://127.0.0.1:1", "--set", set, "--key", f.key}, exitUsage},
		{"refresh, master without token", []string{"refresh", "--master", "http://127.0.0.1:1", "--set", set, "--key", f.key, "--id", "20261125T000000Z"}, exitUsage},
		{"refresh, master without id", []string{"refresh", "--master", "http://127.0.0.1:1", "--token-file", f.key, "--set", set, "--key", f.key}, exitUsage},
		{"refresh, root with id", []string{"refresh", "--root", f.root, "--set", set, "--key", f.key, "--id", "20261125T000000Z"}, exitUsage},
		{"refresh, malformed id", []string{"refresh", "--master", "http://127.0.0.1:1", "--token-file", f.key, "--set", set, "--key", f.key, "--id", "yesterday"}, exitUsage},
		{"unreadable trusted key", []string{"rollback", "--master", "http://127.0.0.1:1", "--token-file", f.key, "--set", set, "--key", f.key, "--to", "20261125T000000Z", "--trusted-key", "/nonexistent.pub"}, exitUsage},
		{"rollback, no target", []string{"rollback", "--set", set, "--key", f.key, "--to", "20261125T000000Z"}, exitUsage},
		{"hostile source", []string{"publish", "--root", f.root, "--set", set, "--key", f.key, "--no-hash-cache", hostile}, exitSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, errs := pkgpublish(t, tt.args...); code != tt.want {
				t.Errorf("exit %d, want %d\n%s", code, tt.want, errs)
			}
		})
	}
}

func TestInterruptedExitCode(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"a": "1"})
	var out, errb bytes.Buffer
	code := run(ctx, []string{"pkgpublish", "publish", "--root", f.root, "--set", set, "--key", f.key, f.src}, &out, &errb)
	if code != exitInterrupted || out.Len() != 0 {
		t.Errorf("cancelled publish: exit %d, stdout %q; want %d and nothing", code, out.String(), exitInterrupted)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30d", 30 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"72h", 72 * time.Hour, true},
		{"d", 0, false},
		{"x", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestRefresh(t *testing.T) {
	f := newFixture(t)
	writeTree(t, f.src, map[string]string{"All/a.pkg": "a"})
	id := f.publish(t)
	out := mustRun(t, "refresh", "--root", f.root, "--set", set, "--key", f.key, "--valid", "90d")
	if strings.TrimSpace(out) != id.String() {
		t.Fatalf("refresh printed %q, want the live ID %s", out, id)
	}
	root, _ := layout.Open(f.root)
	data, _, err := root.Manifest(set, id)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := manifest.Decode(data)
	if d := time.Until(m.Expires); d < 89*24*time.Hour || d > 91*24*time.Hour {
		t.Errorf("refreshed manifest expires in %v, want about 90 days", d)
	}
	mustRun(t, "verify", "--root", f.root, "--pubkey", f.pub)
}
