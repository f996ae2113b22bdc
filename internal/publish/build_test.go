package publish

import (
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/setid"
	"github.com/pkgcdn/pkgcdn/manifest"
)

func TestBuildManifest(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 3, 0, 0, 0, time.UTC)
	id0 := setid.FromTime(t0.Add(-48 * time.Hour))
	live := &manifest.Manifest{Set: testSet, ID: setid.FromTime(t0), Previous: id0, Created: t0, Expires: t0.Add(manifest.DefaultValidity)}
	sum := func(s string) digest.SHA256 { return digest.Sum([]byte(s)) }
	for _, e := range []struct{ path, content string }{{"a", "a"}, {"b/x", "bx"}, {"c", "c"}, {"d", "d"}} {
		live.Entries = append(live.Entries, manifest.Entry{Path: e.path, Size: int64(len(e.content)), SHA256: sum(e.content), Modified: id0})
	}
	item := func(p, c string) Item { return Item{Path: p, Size: int64(len(c)), SHA256: sum(c)} }
	now := t0.Add(24 * time.Hour)
	newID := setid.FromTime(now)
	tests := []struct {
		name    string
		items   []Item
		changed bool
		mod     map[string]setid.ID
	}{
		{"same", []Item{item("a", "a"), item("b/x", "bx"), item("c", "c"), item("d", "d")}, false,
			map[string]setid.ID{"a": id0, "b/x": id0, "c": id0, "d": id0}},
		{"one changed", []Item{item("a", "a"), item("b/x", "BX"), item("c", "c"), item("d", "d")}, true,
			map[string]setid.ID{"a": id0, "b/x": newID, "c": id0, "d": id0}},
		{"removed and added", []Item{item("a", "a"), item("b-y", "new"), item("c", "c")}, true,
			map[string]setid.ID{"a": id0, "b-y": newID, "c": id0}},
		{"only removed", []Item{item("a", "a"), item("c", "c"), item("d", "d")}, true,
			map[string]setid.ID{"a": id0, "c": id0, "d": id0}},
		{"same bytes, new size claim", []Item{item("a", "a"), item("b/x", "bx"), item("c", "c"), {Path: "d", Size: 2, SHA256: sum("d")}}, true,
			map[string]setid.ID{"a": id0, "b/x": id0, "c": id0, "d": newID}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, changed := BuildManifest(testSet, tt.items, live, now, time.Hour)
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			if m.ID != newID || m.Previous != live.ID || !m.Expires.Equal(now.Add(time.Hour)) {
				t.Errorf("ID %s previous %s expires %v", m.ID, m.Previous, m.Expires)
			}
			if len(m.Entries) != len(tt.mod) {
				t.Fatalf("%d entries, want %d", len(m.Entries), len(tt.mod))
			}
			for _, e := range m.Entries {
				if e.Modified != tt.mod[e.Path] {
					t.Errorf("%s modified %s, want %s", e.Path, e.Modified, tt.mod[e.Path])
				}
			}
		})
	}
	// A clock behind the live set still gets a newer ID.
	m, _ := BuildManifest(testSet, tests[1].items, live, t0.Add(-time.Hour), time.Hour)
	if !m.ID.After(live.ID) {
		t.Errorf("ID %s with a clock behind, want after %s", m.ID, live.ID)
	}
}
