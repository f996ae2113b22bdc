package publish

import (
	"errors"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/origin"
	"github.com/pkgcdn/pkgcdn/internal/sign"
	"github.com/pkgcdn/pkgcdn/layout"
)

// newOrigin runs the real master handler (internal/origin) over a new root.
func newOrigin(t testing.TB, pub, token string) (*layout.Root, *httptest.Server) {
	t.Helper()
	v, err := sign.NewVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	root := newRoot(t)
	srv, err := origin.New(origin.Config{Root: root, Verifier: v, PublishToken: token, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return root, ts
}

func TestPublishRemoteAgainstOrigin(t *testing.T) {
	cfg, pub := remoteConfig(t)
	root, ts := newOrigin(t, pub, "tok")
	c := newClient(t, ts.URL, "tok")
	src := t.TempDir()
	writeTree(t, src, map[string]string{"All/a.pkg": "aaaa", "All/b.pkg": "bbbb", "meta.conf": "m", "All/Hashed/a~1.pkg": "aaaa"})
	r1, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.New || r1.Sent != 3 {
		t.Errorf("first publish = %+v, want 3 objects sent", r1)
	}
	checkConsistent(t, root, testSet, pub)

	r2, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil || r2.New || r2.Sent != 0 || r2.ID != r1.ID {
		t.Fatalf("unchanged republish = %+v, %v; want nothing sent, live %s", r2, err, r1.ID)
	}
	writeTree(t, src, map[string]string{"All/b.pkg": "b2"})
	r3, err := PublishRemote(t.Context(), cfg, c, src)
	if err != nil || !r3.New || r3.Sent != 1 {
		t.Fatalf("republish = %+v, %v; want one object sent", r3, err)
	}
	m := checkConsistent(t, root, testSet, pub)
	if m.ID != r3.ID {
		t.Fatalf("origin's live set %s, want %s", m.ID, r3.ID)
	}

	v, _ := sign.NewVerifier(pub)
	rep, err := Audit(t.Context(), AuditConfig{URL: ts.URL, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 0 || len(rep.Sets) != 1 || rep.Sets[0].Checked != 4 || rep.Sets[0].ID != r3.ID {
		t.Fatalf("audit of a healthy master = %+v", rep)
	}
	// Tamper with an object in place (the set's hardlink shares its inode).
	obj := root.ObjectPath(digest.Sum([]byte("aaaa")))
	if err := os.Chmod(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(obj, []byte("AAAA"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A master restarted over the tampered root: the running one may serve
	// small objects from its memory, verified when they were loaded.
	srv, err := origin.New(origin.Config{Root: root, Verifier: v, PublishToken: "tok", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	restarted := httptest.NewServer(srv)
	defer restarted.Close()
	rep, err = Audit(t.Context(), AuditConfig{URL: restarted.URL, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, p := range rep.Problems {
		// Either the master serves the tampered bytes (a mismatch) or it
		// checks them first and refuses with a 500: both are reported.
		var me *digest.MismatchError
		if p.Err == nil || (errors.As(p.Err, &me) && me.Want != digest.Sum([]byte("aaaa"))) {
			t.Errorf("audit problem %s: %v, want a sha256 mismatch or a refusal", p.Path, p.Err)
		}
		paths = append(paths, p.Path)
	}
	if got := strings.Join(paths, " "); got != "All/Hashed/a~1.pkg All/a.pkg" {
		t.Errorf("audit named %q, want both paths of the tampered object", got)
	}

	// Wrong token against the real handler.
	_, err = PublishRemote(t.Context(), cfg, newClient(t, ts.URL, "nope"), src)
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("wrong token: %v, want ErrUnauthorized", err)
	}
}
