package origin

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// TestUnverifiableSetsPairKeepsTheLastGood: a publisher killed between
// writing SETS and its signature leaves a pair that does not verify. The
// master keeps serving the last pair that did, reports degraded, and takes
// the repaired pair once it verifies.
func TestUnverifiableSetsPairKeepsTheLastGood(t *testing.T) {
	f := newFixture(t, nil)
	f.publish("a", map[string]string{"x": "1"})
	_, good := f.get("/.pkgcdn/sets")
	goodSig, err := os.ReadFile(filepath.Join(f.root.Dir, "SETS.minisig"))
	if err != nil {
		t.Fatal(err)
	}
	// The next publish's SETS landed, its signature did not.
	f.publishLocal("a", map[string]string{"x": "2"})
	newSig, err := os.ReadFile(filepath.Join(f.root.Dir, "SETS.minisig"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root.Dir, "SETS.minisig"), goodSig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(); err == nil {
		t.Error("Refresh accepted a SETS whose signature does not verify")
	}
	if resp, b := f.get("/.pkgcdn/sets"); resp.StatusCode != http.StatusOK || string(b) != string(good) {
		t.Errorf("GET /.pkgcdn/sets = %d %q, want the last good SETS %q", resp.StatusCode, b, good)
	}
	if !f.health.Status(f.clock.Now()).Degraded {
		t.Error("health not degraded while SETS does not verify")
	}
	// The rerun repairs the signature.
	if err := os.WriteFile(filepath.Join(f.root.Dir, "SETS.minisig"), newSig, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.srv.Refresh(); err != nil {
		t.Fatalf("Refresh after the repair: %v", err)
	}
	if _, b := f.get("/.pkgcdn/sets"); string(b) == string(good) {
		t.Error("still serving the old SETS after the repair")
	}
	if st := f.health.Status(f.clock.Now()); st.Degraded {
		t.Errorf("health still degraded after the repair: %v", st.Reasons)
	}
}
