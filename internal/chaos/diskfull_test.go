package chaos

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/sampleset"
)

// mountTmpfs mounts a tmpfs of size (mount(8) syntax: "8m") on dir for the
// test. The suite runs as root in CI; without the privilege the test fails
// with a clear message rather than skipping what it must prove.
func mountTmpfs(t testing.TB, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("mount -t tmpfs -o size=%s tmpfs %s: %v: %s\nthe disk-full tests need root (or CAP_SYS_ADMIN) to mount a small filesystem", size, dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// TestEdgeDiskFull runs an edge whose --cache-dir is an 8 MiB filesystem
// while its --cache-size allows 1 GiB, and pulls a 24 MiB set through it
// twice. What must hold: every response is byte-correct (what cannot be
// kept is passed through), the disk errors are counted in the metrics and
// logged with the system's reason, and the edge keeps serving.
func TestEdgeDiskFull(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 12, 40, 24*sampleset.MiB)
	dir := p.e.path("cache")
	mountTmpfs(t, dir, "8m")
	edge := p.e.startEdge(t, dir, []string{p.master.url}, "--cache-size", "1GiB", "--prefetch", "-1")
	p.e.waitSet(t, edge.url, p.m.ID)
	for range 2 {
		fetchAll(t, edge.url, p.m)
	}
	if n := metric(t, edge, "pkgcdn_edge_cache_disk_errors_total"); n == 0 {
		t.Errorf("pkgcdn_edge_cache_disk_errors_total = 0 after filling an 8 MiB disk with 24 MiB")
	}
	if log := edge.p.Log(); !strings.Contains(log, "no space left on device") {
		t.Errorf("the edge's log does not say the disk is full:\n%s", tail(log, 4000))
	}
}

// TestMasterDiskFullDuringPublish publishes, locally and then over HTTP, a
// set that does not fit on the master's 16 MiB filesystem. What must hold:
// pkgpublish fails with an error naming the full disk, the live set is
// untouched, and the master keeps serving it byte-correct.
func TestMasterDiskFullDuringPublish(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	root := e.path("root")
	mountTmpfs(t, root, "16m")
	src := makeRepo(t, e.path("src"), 13, 20, 2*sampleset.MiB)
	master := e.startMaster(t, root)
	live := e.publishRemote(t, master.url, src)
	e.waitSet(t, master.url, live)
	addHuge(t, src, 24<<20)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"local", []string{"publish", "--root", root, "--set", testSet, "--key", e.key, "--no-hash-cache", src}},
		{"remote", e.publishArgs(master.url, src, "--retries", "0")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := runErr(t, bin("pkgpublish"), tc.args...)
			if err == nil {
				t.Fatalf("a 26 MiB publish onto a 16 MiB disk succeeded:\n%s", out)
			}
			if !strings.Contains(out, "no space left on device") && !strings.Contains(out, "disk full") {
				t.Errorf("pkgpublish's error does not say the disk is full:\n%s", tail(out, 4000))
			}
			if got, ok := e.checkServed(t, master.url); got != live || !ok {
				t.Errorf("after the failed publish the master serves %s (SETS verifies: %v), want %s", got, ok, live)
			}
		})
	}
}
