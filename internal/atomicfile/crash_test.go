package atomicfile

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// crashEnv tells a re-executed test binary to die at a step (groupcache's
// TestHTTPPool pattern): it is a real process exit, with no deferred cleanup.
const crashEnv = "ATOMICFILE_CRASH_AT"

// TestCrashHelper is not a test: it is the child process of
// TestCrashLeavesOldOrNew, run only with crashEnv set.
func TestCrashHelper(t *testing.T) {
	step := os.Getenv(crashEnv)
	if step == "" {
		return // not the child: nothing to do
	}
	dir := os.Getenv(crashEnv + "_DIR")
	FaultHook = func(s string) error {
		if s == step {
			os.Exit(3)
		}
		return nil
	}
	var err error
	if step == "symlink-rename" {
		err = ReplaceSymlink("new", filepath.Join(dir, "link"))
	} else {
		err = WriteFile(filepath.Join(dir, "file"), []byte("new"), 0o444)
	}
	t.Fatalf("step %q never reached: %v", step, err)
}

// TestCrashLeavesOldOrNew kills a writer at each step and checks that the
// old file or link is intact and that what is left over is recognisably a
// temp file, for a collector to remove.
func TestCrashLeavesOldOrNew(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{"sync", "rename", "symlink-rename"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "file"), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("old", filepath.Join(dir, "link")); err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+step, crashEnv+"_DIR="+dir)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("child crashing at %s: %v, want exit status 3\n%s", step, err, out)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "file")); err != nil || string(b) != "old" {
				t.Errorf("file after crash at %s = %q, %v, want %q", step, b, err, "old")
			}
			if l, err := os.Readlink(filepath.Join(dir, "link")); err != nil || l != "old" {
				t.Errorf("link after crash at %s = %q, %v, want %q", step, l, err, "old")
			}
			var temps int
			for _, n := range names(t, dir) {
				switch {
				case n == "file" || n == "link":
				case IsTemp(n):
					temps++
				default:
					t.Errorf("crash at %s left %q, not recognisable as a temp file", step, n)
				}
			}
			if temps != 1 {
				t.Errorf("crash at %s left %d temp files, want 1", step, temps)
			}
		})
	}
}
