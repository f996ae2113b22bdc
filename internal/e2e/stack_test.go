package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// stack is a master and an edge on loopback, with a signing key and a
// publish token, as an operator would run them.
type stack struct {
	dir       string
	key, pub  string // signing key pair
	tokenFile string
	root      string
	master    *proc
	masterURL string
	edge      *proc
	edgeURL   string
	plainEdge bool
}

type stackOptions struct {
	plainEdge bool     // edge without --trusted-key (plain HTTP mode, --set-id-url = master's SETS)
	edgeArgs  []string // extra edge flags
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	s := &stack{dir: t.TempDir()}
	prefix := filepath.Join(s.dir, "signing")
	run(t, bin("pkgpublish"), "keygen", "--out", prefix)
	s.key, s.pub = prefix+".key", prefix+".pub"
	s.tokenFile = filepath.Join(s.dir, "token")
	if err := os.WriteFile(s.tokenFile, []byte("e2e-secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.root = filepath.Join(s.dir, "root")
	if err := os.Mkdir(s.root, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	s.masterURL = "http://" + addr
	s.master = start(t, bin("pkgserve"), "--root", s.root, "--listen", addr, "--admin-listen", freeAddr(t),
		"--publish-token-file", s.tokenFile, "--trusted-key", s.pub)
	waitHTTP(t, s.master, s.masterURL+"/.pkgcdn/sets")

	eaddr := freeAddr(t)
	s.edgeURL = "http://" + eaddr
	args := []string{"--edge", "--upstream", s.masterURL, "--cache-dir", filepath.Join(s.dir, "cache"),
		"--cache-size", "1GiB", "--listen", eaddr, "--admin-listen", freeAddr(t)}
	s.plainEdge = o.plainEdge
	if o.plainEdge {
		// Plain mode knows nothing of SETS signatures: the master's SETS file
		// is just the file whose change means "new set".
		args = append(args, "--set-id-url", s.masterURL+"/.pkgcdn/sets", "--poll", "200ms")
	} else {
		args = append(args, "--trusted-key", s.pub)
	}
	args = append(args, o.edgeArgs...)
	s.edge = start(t, bin("pkgserve"), args...)
	waitHTTP(t, s.edge, s.edgeURL+"/.pkgcdn/sets")
	return s
}

// seenFile is the stack's own pkgpublish seen-IDs file: masters of other
// tests may have had the same address.
func (s *stack) seenFile() string { return filepath.Join(s.dir, "seen-ids.json") }

// publish publishes src as set over HTTP and returns the new set ID.
func (s *stack) publish(t testing.TB, set, src string) setid.ID {
	t.Helper()
	out := run(t, bin("pkgpublish"), "publish", "--master", s.masterURL, "--token-file", s.tokenFile,
		"--seen-file", s.seenFile(), "--set", set, "--key", s.key, src)
	id, err := setid.Parse(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("publish printed %q, want a set ID", out)
	}
	return id
}

// waitSet blocks until the server at base lists set at id in its SETS,
// using the long-poll on /.pkgcdn/sets (no sleeping).
func waitSet(t testing.TB, base, set string, id setid.ID) {
	t.Helper()
	waitSets(t, base, func(body []byte) bool {
		sets, err := setid.ParseSets(bytes.NewReader(body))
		e, ok := sets.Lookup(set)
		return err == nil && ok && !id.After(e.ID)
	}, fmt.Sprintf("switch %s to %s", set, id))
}

// waitSets long-polls the SETS of the server at base until done accepts
// it (a 200's body), for at most 2 minutes; what names the wait in the
// failure.
func waitSets(t testing.TB, base string, done func(body []byte) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	etag := ""
	for time.Now().Before(deadline) {
		url := base + "/.pkgcdn/sets"
		if etag != "" {
			url += "?wait=" + strings.Trim(etag, `"`)
		}
		code, h, body := get(t, url)
		if code == http.StatusOK && done(body) {
			return
		}
		if et := h.Get("ETag"); et != "" {
			etag = et
		}
	}
	t.Fatalf("%s did not %s in time", base, what)
}

// waitServing waits until the edge serves set at id: in manifest-aware mode
// by long-polling its SETS; in plain mode, where the edge only polls the
// set-ID URL, until the edge's copy of rel equals the file at local (bounded
// polling: the plain edge exposes no event to wait on).
func (s *stack) waitServing(t testing.TB, set string, id setid.ID, rel, local string) {
	t.Helper()
	waitSet(t, s.masterURL, set, id)
	if !s.plainEdge {
		waitSet(t, s.edgeURL, set, id)
		return
	}
	want, err := os.ReadFile(local)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		code, _, body := get(t, s.edgeURL+"/"+set+"/"+rel)
		if code == http.StatusOK && bytes.Equal(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("plain edge still serves an old %s/%s (status %d)", set, rel, code)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
