//go:build unix

package publish

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestScanRefusesUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeTree(t, src, map[string]string{"All/ok.pkg": "ok", "All/secret.pkg": "secret"})
	if err := os.Chmod(filepath.Join(src, "All/secret.pkg"), 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		_, err := Scan(t.Context(), src)
		if !errors.Is(err, ErrBadSource) || !strings.Contains(err.Error(), "All/secret.pkg") {
			t.Fatalf("Scan = %v, want ErrBadSource naming All/secret.pkg", err)
		}
		return
	}
	// root reads everything: scan as nobody, from a copy of this test
	// binary that nobody may run, in directories nobody may enter.
	// t.TempDir makes <tmp>/<test>/<n>, both 0700: open up just those two.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "publish.test")
	copyFile(t, os.Args[0], bin)
	cmd := exec.CommandContext(t.Context(), bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), "PKGCDN_TEST_SCAN="+src)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scan as nobody: %v\n%s", err, out)
	}
	if got := string(out); !strings.Contains(got, ErrBadSource.Error()) || !strings.Contains(got, "All/secret.pkg: not readable") {
		t.Fatalf("Scan as nobody = %s, want ErrBadSource naming All/secret.pkg", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
