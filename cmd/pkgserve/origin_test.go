package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/layout"
)

// TestRecoverRootRemovesObjectsOfADeadWriter: a master restarted after a
// power loss mid-upload must not serve an object whose bytes never reached
// the disk. A dead writer's marker (no flock held) makes start-up re-check
// the objects it may have left, and a bad one goes.
func TestRecoverRootRemovesObjectsOfADeadWriter(t *testing.T) {
	root, err := layout.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	good := []byte("an object whose bytes made it to disk")
	gd := digest.Sum(good)
	if err := root.PutObject(gd, int64(len(good)), strings.NewReader(string(good))); err != nil {
		t.Fatal(err)
	}
	// An object linked in place whose content was lost: zeros.
	bad := digest.Sum([]byte("lost in the crash"))
	badPath := root.ObjectPath(bad)
	if err := os.MkdirAll(filepath.Dir(badPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badPath, make([]byte, 17), 0o444); err != nil {
		t.Fatal(err)
	}
	// The marker of a writer that died (nobody holds its flock).
	if err := os.WriteFile(filepath.Join(root.Dir, ".unsynced-999999-dead"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := recoverRoot(t.Context(), root); err != nil {
		t.Fatalf("recoverRoot: %v", err)
	}
	if ok, _ := root.HasObject(bad); ok {
		t.Error("the object the dead writer left corrupt is still stored")
	}
	if ok, _ := root.HasObject(gd); !ok {
		t.Error("a good object was removed")
	}
}
