package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestFlagNamesUnique guards the contract between main.go, origin.go and
// edge.go: a flag name (or alias) defined twice makes urfave/cli panic at
// startup.
func TestFlagNamesUnique(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range slices.Concat(commonFlags(), originFlags(), edgeFlags(), demoFlags()) {
		for _, n := range f.Names() {
			if seen[n] {
				t.Errorf("flag --%s defined twice", n)
			}
			seen[n] = true
		}
	}
}

func TestReadMirrorList(t *testing.T) {
	tests := []struct {
		name, content string
		want          []string
		wantErr       bool
	}{
		{"plain", "http://a.example/\nhttp://b.example/\n", []string{"http://a.example/", "http://b.example/"}, false},
		{"comments and URL: lines", "# mirrors\n\nURL: http://a.example/\n  http://b.example/  \n", []string{"http://a.example/", "http://b.example/"}, false},
		{"empty", "# nothing\n", nil, true},
		{"two on a line", "http://a http://b\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mirrors")
			if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := readMirrorList(p)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("readMirrorList(%q) = %q, %v; want %q, error %v", tt.content, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestReadToken(t *testing.T) {
	tests := []struct {
		name, content, want string
		wantErr             bool
	}{
		{"trimmed", "  0123456789abcdef0123\n", "0123456789abcdef0123", false},
		{"empty", "\n", "", true},
		{"short", "abc\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := readToken(p)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("readToken(%q) = %q, %v; want %q, error %v", tt.content, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
