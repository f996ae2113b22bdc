package main

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

func TestPublishMasterAndVerifyURL(t *testing.T) {
	f := newFixture(t)
	v, err := sign.NewVerifier(f.pub)
	if err != nil {
		t.Fatal(err)
	}
	root, err := layout.Open(f.root)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := origin.New(origin.Config{Root: root, Verifier: v, PublishToken: "tok", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	tokFile := filepath.Join(f.dir, "token")
	if err := os.WriteFile(tokFile, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
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
