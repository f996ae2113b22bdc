package version

import (
	"strings"
	"testing"
)

func TestStringUsesLinkerStamps(t *testing.T) {
	Version, Commit, Date = "v1.2.3", "abc123", "2026-11-25T00:00:00Z"
	t.Cleanup(func() { Version, Commit, Date = "", "", "" })
	got := String()
	for _, want := range []string{"v1.2.3", "commit abc123", "built 2026-11-25T00:00:00Z"} {
		if !strings.Contains(got, want) {
			t.Errorf("String() = %q, want it to contain %q", got, want)
		}
	}
}

func TestStringDefaultsWithoutStamps(t *testing.T) {
	got := String()
	if !strings.HasPrefix(got, "devel ") && !strings.HasPrefix(got, "v") {
		t.Errorf("String() = %q, want a devel or module version first", got)
	}
}
