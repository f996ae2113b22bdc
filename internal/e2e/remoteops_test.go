package e2e

import (
	"bytes"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/setid"
)

// TestRemoteRefreshRollbackList: the build host lists a master's sets,
// refreshes the live manifest and rolls back, all over HTTP; the edge
// follows each step.
func TestRemoteRefreshRollbackList(t *testing.T) {
	s := newStack(t, stackOptions{})
	const set = "FreeBSD:14:amd64/latest"
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "All/a.pkg"), "version one")
	id1 := s.publish(t, set, src)
	writeFile(t, filepath.Join(src, "All/a.pkg"), "version two")
	id2 := s.publish(t, set, src)
	waitSet(t, s.edgeURL, set, id2)

	remote := []string{"--master", s.masterURL, "--token-file", s.tokenFile, "--seen-file", s.seenFile(), "--set", set, "--key", s.key}
	for _, base := range []string{s.masterURL, s.edgeURL} {
		out := run(t, bin("pkgpublish"), "list", "--url", base)
		if !strings.Contains(out, id1.String()) || !strings.Contains(out, id2.String()) {
			t.Errorf("list --url %s does not name %s and %s:\n%s", base, id1, id2, out)
		}
	}

	out := run(t, bin("pkgpublish"), append([]string{"refresh", "--valid", "90d", "--id", id2.String()}, remote...)...)
	if strings.TrimSpace(out) != id2.String() {
		t.Fatalf("refresh --master printed %q, want %s", out, id2)
	}
	_, _, sets := get(t, s.masterURL+"/.pkgcdn/sets")
	// The edge takes the re-signed manifest and re-serves the new SETS.
	waitSets(t, s.edgeURL, func(body []byte) bool { return bytes.Equal(body, sets) }, "serve the refreshed SETS")
	_, _, mEdge := get(t, s.edgeURL+"/.pkgcdn/manifest/"+set+"/"+id2.String())
	_, _, mMaster := get(t, s.masterURL+"/.pkgcdn/manifest/"+set+"/"+id2.String())
	if !bytes.Equal(mEdge, mMaster) {
		t.Error("the edge serves another manifest than the refreshed one")
	}

	out = run(t, bin("pkgpublish"), append([]string{"rollback", "--to", id1.String()}, remote...)...)
	id3, err := setid.Parse(strings.TrimSpace(out))
	if err != nil || !id3.After(id2) {
		t.Fatalf("rollback --master printed %q, want a set ID after %s", out, id2)
	}
	waitSet(t, s.edgeURL, set, id3)
	if code, _, body := get(t, s.edgeURL+"/"+set+"/All/a.pkg"); code != http.StatusOK || string(body) != "version one" {
		t.Errorf("edge after rollback: %d %q, want version one", code, body)
	}
}
