package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// newMaster starts a master (origin over httptest) on f's root, trusting
// f's key, with the upload token "tok" in the returned token file.
func newMaster(t *testing.T, f fixture) (root *layout.Root, v *sign.Verifier, ts *httptest.Server, tokFile string) {
	t.Helper()
	v, err := sign.NewVerifier(f.pub)
	if err != nil {
		t.Fatal(err)
	}
	if root, err = layout.Open(f.root); err != nil {
		t.Fatal(err)
	}
	srv, err := origin.New(origin.Config{Root: root, Verifier: v, PublishToken: "tok", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ts = httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	tokFile = filepath.Join(f.dir, "token")
	if err := os.WriteFile(tokFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, v, ts, tokFile
}

func TestPublishMasterAndVerifyURL(t *testing.T) {
	f := newFixture(t)
	root, v, ts, tokFile := newMaster(t, f)
	writeTree(t, f.src, map[string]string{"All/a.pkg": "aaaa", "All/b.pkg": "bbbb"})
	t.Setenv("PKGCDN_TOKEN_FILE", tokFile) // flags also come from PKGCDN_<FLAG>
	out := mustRun(t, "publish", "--master", ts.URL, "--set", set, "--key", f.key, "--no-hash-cache", f.src)
	id := strings.TrimSpace(out)
	if live, err := root.Live(set); err != nil || live.String() != id {
		t.Fatalf("publish printed %q, master's live set %s (%v)", out, live, err)
	}

	out = mustRun(t, "verify", "--url", ts.URL, "--pubkey", f.pub)
	if !strings.Contains(out, "OK "+set+" "+id+": 2 of 2 files checked") {
		t.Errorf("verify --url:\n%s", out)
	}
	obj := root.ObjectPath(digest.Sum([]byte("bbbb")))
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("BBBB"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A master restarted over the tampered root: the running one may serve
	// small files from its memory, verified when they were loaded. The new
	// one serves the tampered bytes (a sha256 mismatch) or refuses them
	// (an HTTP error): either is a FAIL naming the file.
	srv2, err := origin.New(origin.Config{Root: root, Verifier: v, PublishToken: "tok", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ts2 := httptest.NewServer(srv2)
	defer ts2.Close()
	code, out, _ := pkgpublish(t, "verify", "--url", ts2.URL, "--pubkey", f.pub, "--sample", "2")
	if code != exitVerify || !strings.Contains(out, "FAIL "+set+" "+id+" All/b.pkg: ") {
		t.Errorf("verify --url of a tampered master: exit %d\n%s", code, out)
	}

	if err := os.WriteFile(tokFile, []byte("wrong"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := pkgpublish(t, "publish", "--master", ts.URL, "--set", set, "--key", f.key, "--no-hash-cache", f.src)
	if code != exitAuth || !strings.Contains(errs, "check --token-file") {
		t.Errorf("wrong token: exit %d, want %d\n%s", code, exitAuth, errs)
	}
}

// TestRefreshRollbackMaster: refresh and rollback with --master, against a
// real master.
func TestRefreshRollbackMaster(t *testing.T) {
	f := newFixture(t)
	root, _, ts, tokFile := newMaster(t, f)
	remote := func(cmd string, args ...string) []string {
		return append([]string{cmd, "--master", ts.URL, "--token-file", tokFile, "--set", set, "--key", f.key}, args...)
	}
	publishID := func() setid.ID {
		out := mustRun(t, remote("publish", "--no-hash-cache", f.src)...)
		id, err := setid.Parse(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("publish printed %q", out)
		}
		return id
	}
	writeTree(t, f.src, map[string]string{"All/a.pkg": "a1", "meta.conf": "m"})
	id1 := publishID()
	writeTree(t, f.src, map[string]string{"All/a.pkg": "a2"})
	id2 := publishID()

	manifestOf := func(id setid.ID) *manifest.Manifest {
		data, _, err := root.Manifest(set, id)
		if err != nil {
			t.Fatal(err)
		}
		m, err := manifest.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	before := manifestOf(id2).Expires
	out := mustRun(t, remote("refresh", "--valid", "90d", "--id", id2.String())...)
	if strings.TrimSpace(out) != id2.String() {
		t.Errorf("refresh --master printed %q, want the live ID %s", out, id2)
	}
	after := manifestOf(id2).Expires
	if after.Sub(before) < 59*24*time.Hour {
		t.Errorf("refresh --valid 90d moved the expiry from %v to %v", before, after)
	}
	// A daily refresh with a shorter --valid keeps the later expiry.
	mustRun(t, remote("refresh", "--valid", "1d", "--id", id2.String())...)
	if got := manifestOf(id2).Expires; !got.Equal(after) {
		t.Errorf("refresh --valid 1d moved the expiry from %v to %v, want it kept", after, got)
	}
	if code, _, errs := pkgpublish(t, remote("refresh", "--id", id1.String())...); code == 0 || !strings.Contains(errs, id2.String()) {
		t.Errorf("refresh --id of a set not live: exit %d, want a refusal naming the live %s\n%s", code, id2, errs)
	}

	// list --url finds the rollback target; rollback --master uses it.
	listed := func() []string {
		var rows []string
		for _, line := range strings.Split(strings.TrimSpace(mustRun(t, "list", "--url", ts.URL)), "\n")[1:] {
			fields := strings.Fields(line)
			if fields[0] != set {
				t.Fatalf("list --url line %q", line)
			}
			if fields[2] == "*" {
				fields[1] += "*"
			}
			rows = append(rows, fields[1])
		}
		return rows
	}
	if got, want := listed(), []string{id1.String(), id2.String() + "*"}; !slices.Equal(got, want) {
		t.Errorf("list --url = %q, want %q", got, want)
	}
	for _, args := range [][]string{{"list", "--url", ts.URL, "--set", "debian/none"}, {"list", "--root", f.root, "--set", "debian/none"}} {
		if code, _, errs := pkgpublish(t, args...); code == 0 || !strings.Contains(errs, "not found") {
			t.Errorf("%v: exit %d, want an error naming the unknown set\n%s", args, code, errs)
		}
	}
	if out := mustRun(t, "list", "--root", f.root, "--set", set); strings.Count(out, set) != 2 {
		t.Errorf("list --root --set:\n%s", out)
	}
	out = mustRun(t, remote("rollback", "--to", id1.String())...)
	id3, err := setid.Parse(strings.TrimSpace(out))
	if err != nil || !id3.After(id2) {
		t.Fatalf("rollback --master printed %q, want a new ID after %s", out, id2)
	}
	unlock, err := root.Lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.GC(t.Context(), layout.Policy{Keep: 2, Grace: time.Minute, Now: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	if got, want := listed(), []string{id2.String(), id3.String() + "*"}; !slices.Equal(got, want) {
		t.Errorf("list --url after gc = %q, want %q (the collected set is not listed)", got, want)
	}
	if live, _ := root.Live(set); live != id3 {
		t.Errorf("live set %s after rollback, want %s", live, id3)
	}
	if e, ok := manifestOf(id3).Lookup("All/a.pkg"); !ok || e.SHA256 != digest.Sum([]byte("a1")) {
		t.Errorf("rolled-back All/a.pkg is %v, want set %s's", e, id1)
	}
	if code, _, errs := pkgpublish(t, remote("rollback", "--to", "20200101T000000Z")...); code == 0 || !strings.Contains(errs, "not retained") {
		t.Errorf("rollback to an unknown ID: exit %d\n%s", code, errs)
	}
}
