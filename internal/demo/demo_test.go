package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/proctest"
)

func TestMain(m *testing.M) { os.Exit(proctest.Main(m)) }

// TestTourRuns runs the whole guided tour (what `make demo` shows) with the
// real binaries, on free ports, and checks that it tells the story it
// promises: misses, then hits, a switch to the second set, and the grace
// fetch of a package the new set dropped.
func TestTourRuns(t *testing.T) {
	var out strings.Builder
	err := Run(t.Context(), Config{
		BinDir:     filepath.Dir(proctest.Bin("pkgserve")),
		Dir:        t.TempDir(),
		MasterAddr: proctest.FreeAddr(t),
		EdgeAddr:   proctest.FreeAddr(t),
		Out:        &out,
	})
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	story := out.String()
	for _, want := range []string{
		"== 8.", "miss (fetched from master)", "hit (served from the edge's disk)",
		"edge switched to", "grace for the previous set", "Try it yourself",
	} {
		if !strings.Contains(story, want) {
			t.Errorf("the tour never says %q:\n%s", want, story)
		}
	}
}
