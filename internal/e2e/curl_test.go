package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCurlWgetThroughEdge downloads, resumes and conditionally re-fetches
// through an edge with the stock curl and wget, in both edge modes.
func TestCurlWgetThroughEdge(t *testing.T) {
	for _, tool := range []string{"curl", "wget"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install %s): %v", tool, tool, err)
		}
	}
	for _, mode := range []struct {
		name  string
		plain bool
	}{{"manifest-aware", false}, {"plain-http", true}} {
		t.Run(mode.name, func(t *testing.T) {
			s := newStack(t, stackOptions{plainEdge: mode.plain})
			src := t.TempDir()
			files := pkgTree(t, src, 1)
			const set = "FreeBSD:14:amd64/latest"
			id := s.publish(t, set, src)
			s.waitServing(t, set, id, "meta.conf", filepath.Join(src, "meta.conf"))
			name := "All/curl-8.10.pkg"
			url := s.edgeURL + "/" + set + "/" + name
			want := files[name]
			dl := t.TempDir()

			// curl: full download, fails on HTTP errors.
			out := filepath.Join(dl, "curl-full.pkg")
			run(t, "curl", "-fsS", "-o", out, url)
			assertFile(t, out, want)

			// curl resume: a partial file completed with -C - (Range: bytes=N-).
			part := filepath.Join(dl, "curl-part.pkg")
			if err := os.WriteFile(part, want[:100_000], 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "curl", "-fsS", "-C", "-", "-o", part, url)
			assertFile(t, part, want)

			// curl conditional: -z FILE sends If-Modified-Since with the file's
			// mtime; set it to the server's Last-Modified with -R first.
			cond := filepath.Join(dl, "curl-cond.pkg")
			run(t, "curl", "-fsS", "-R", "-o", cond, url)
			code := run(t, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-z", cond, url)
			if strings.TrimSpace(code) != "304" {
				t.Errorf("curl -z after -R = %s, want 304", code)
			}
			// ETag revalidation.
			etags := filepath.Join(dl, "etag")
			run(t, "curl", "-fsS", "--etag-save", etags, "-o", "/dev/null", url)
			code = run(t, "curl", "-sS", "--etag-compare", etags, "-o", "/dev/null", "-w", "%{http_code}", url)
			if strings.TrimSpace(code) != "304" {
				t.Errorf("curl --etag-compare = %s, want 304", code)
			}

			// wget: download, then continue a partial file with -c.
			wfile := filepath.Join(dl, "wget.pkg")
			run(t, "wget", "-q", "-O", wfile, url)
			assertFile(t, wfile, want)
			wpart := filepath.Join(dl, "wget-part", filepath.Base(name))
			writeFile(t, wpart, string(want[:777]))
			cmd := exec.Command("wget", "-q", "-c", url)
			cmd.Dir = filepath.Dir(wpart)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("wget -c: %v\n%s", err, b)
			}
			assertFile(t, wpart, want)
		})
	}
}

func assertFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes, want the published %d bytes", filepath.Base(path), len(got), len(want))
	}
}
