package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildDeb builds a tiny architecture-independent .deb with dpkg-deb.
func buildDeb(t *testing.T, work, name, version, content string) string {
	t.Helper()
	pkg := filepath.Join(work, name+"-"+version)
	for _, d := range []string{"DEBIAN", "usr/share/" + name} {
		if err := os.MkdirAll(filepath.Join(pkg, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: pkgcdn tests <test@example.invalid>\nDescription: pkgcdn end-to-end test package\n", name, version)
	writeFile(t, filepath.Join(pkg, "DEBIAN/control"), control)
	writeFile(t, filepath.Join(pkg, "usr/share", name, "hello.txt"), content)
	deb := filepath.Join(work, fmt.Sprintf("%s_%s_all.deb", name, version))
	run(t, "dpkg-deb", "--root-owner-group", "--build", pkg, deb)
	return deb
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// makeFlatRepo turns repo (holding .deb files) into a flat apt repository:
// Packages, Packages.gz and Release made by apt-ftparchive.
func makeFlatRepo(t *testing.T, repo string) {
	t.Helper()
	cmd := exec.Command("apt-ftparchive", "packages", ".")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("apt-ftparchive packages: %v", err)
	}
	writeFile(t, filepath.Join(repo, "Packages"), string(out))
	run(t, "sh", "-c", "gzip -9nkf "+filepath.Join(repo, "Packages"))
	cmd = exec.Command("apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=pkgcdn-e2e", "release", ".")
	cmd.Dir = repo
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("apt-ftparchive release: %v", err)
	}
	writeFile(t, filepath.Join(repo, "Release"), string(out))
}

// aptGet runs apt-get isolated from the system: its own sources list, state,
// cache and status file, no locking of the system's dirs, as root without
// dropping to the _apt user.
func aptGet(t *testing.T, state, repoURL string, args ...string) string {
	t.Helper()
	for _, d := range []string{"lists/partial", "cache/archives/partial", "etc/preferences.d", "etc/apt.conf.d", "etc/trusted.gpg.d", "dl"} {
		if err := os.MkdirAll(filepath.Join(state, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	status := filepath.Join(state, "status")
	if _, err := os.Stat(status); err != nil {
		writeFile(t, status, "")
	}
	writeFile(t, filepath.Join(state, "etc/sources.list"), "deb [trusted=yes] "+repoURL+" ./\n")
	opts := []string{
		"-o", "Dir::Etc=" + filepath.Join(state, "etc"),
		"-o", "Dir::Etc::SourceList=" + filepath.Join(state, "etc/sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(state, "etc/sources.list.d"),
		"-o", "Dir::State=" + state,
		"-o", "Dir::State::Lists=" + filepath.Join(state, "lists"),
		"-o", "Dir::State::status=" + status,
		"-o", "Dir::Cache=" + filepath.Join(state, "cache"),
		"-o", "Debug::NoLocking=1",
		"-o", "APT::Sandbox::User=root",
		"-o", "Acquire::Languages=none",
		"-o", "Acquire::Retries=0",
		"-o", "Acquire::http::Pipeline-Depth=0",
		"-q",
	}
	cmd := exec.Command("apt-get", append(opts, args...)...)
	cmd.Dir = filepath.Join(state, "dl")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("apt-get %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestAptThroughEdge publishes a real apt repository with pkgpublish, points
// an isolated apt-get at an edge, downloads a package, then publishes a new
// set and checks apt-get picks it up through the edge with no hash mismatch.
func TestAptThroughEdge(t *testing.T) {
	for _, tool := range []string{"apt-get", "apt-ftparchive", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install apt-utils dpkg-dev): %v", tool, err)
		}
	}
	for _, mode := range []struct {
		name  string
		plain bool
	}{{"manifest-aware", false}, {"plain-http", true}} {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, stackOptions{plainEdge: mode.plain})
			work := t.TempDir()
			repo := filepath.Join(work, "repo")
			if err := os.Mkdir(repo, 0o755); err != nil {
				t.Fatal(err)
			}
			deb := buildDeb(t, work, "pkgcdn-hello", "1.0", "hello one\n")
			run(t, "cp", deb, repo)
			makeFlatRepo(t, repo)
			const set = "debian/e2e"
			id1 := s.publish(t, set, repo)
			s.waitServing(t, set, id1, "Release", filepath.Join(repo, "Release"))

			state := filepath.Join(work, "apt")
			repoURL := s.edgeURL + "/" + set
			out := aptGet(t, state, repoURL, "update")
			if strings.Contains(out, "Hash Sum mismatch") || strings.Contains(out, "Err:") {
				t.Fatalf("apt-get update through the edge:\n%s", out)
			}
			aptGet(t, state, repoURL, "download", "pkgcdn-hello")
			if _, err := os.Stat(filepath.Join(state, "dl", "pkgcdn-hello_1.0_all.deb")); err != nil {
				t.Fatalf("apt-get download did not fetch version 1.0: %v", err)
			}
			// The master serves the same repository to apt directly (apt asks
			// a flat repository for "./Packages").
			out = aptGet(t, filepath.Join(work, "apt-master"), s.masterURL+"/"+set, "update")
			if strings.Contains(out, "Err:") || strings.Contains(out, "Hash Sum mismatch") {
				t.Fatalf("apt-get update from the master:\n%s", out)
			}

			// A new set: version 2.0 replaces 1.0.
			if err := os.Remove(filepath.Join(repo, filepath.Base(deb))); err != nil {
				t.Fatal(err)
			}
			run(t, "cp", buildDeb(t, work, "pkgcdn-hello", "2.0", "hello two\n"), repo)
			makeFlatRepo(t, repo)
			id2 := s.publish(t, set, repo)
			if !id2.After(id1) {
				t.Fatalf("second publish ID %s not after %s", id2, id1)
			}
			s.waitServing(t, set, id2, "Release", filepath.Join(repo, "Release"))
			out = aptGet(t, state, repoURL, "update")
			if strings.Contains(out, "Hash Sum mismatch") || strings.Contains(out, "Err:") {
				t.Fatalf("apt-get update after the new set:\n%s", out)
			}
			aptGet(t, state, repoURL, "download", "pkgcdn-hello")
			if _, err := os.Stat(filepath.Join(state, "dl", "pkgcdn-hello_2.0_all.deb")); err != nil {
				t.Fatalf("apt-get did not pick up version 2.0 through the edge: %v", err)
			}
		})
	}
}
