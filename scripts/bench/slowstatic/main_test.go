package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServesAndCounts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	body := bytes.Repeat([]byte("0123456789"), 50000)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 100 MB/s paces 500 KB in a few ms: enough to run the pacing code.
	srv := httptest.NewServer(&server{root: root, rate: 100e6, latency: time.Millisecond, counts: map[string]int64{}})
	defer srv.Close()
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	for range 3 {
		if code, got := get("/big.bin"); code != 200 || got != string(body) {
			t.Fatalf("GET /big.bin = %d, %d bytes; want 200, %d bytes", code, len(got), len(body))
		}
	}
	for _, p := range []string{"/missing", "/", "/../etc/passwd"} {
		if code, _ := get(p); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, code)
		}
	}
	if _, got := get("/__count?path=/big.bin"); strings.TrimSpace(got) != "3" {
		t.Errorf("count of /big.bin = %q, want 3", got)
	}
	if _, err := http.Post(srv.URL+"/__reset", "", nil); err != nil {
		t.Fatal(err)
	}
	if _, got := get("/__count?path=/big.bin"); strings.TrimSpace(got) != "0" {
		t.Errorf("count after reset = %q, want 0", got)
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"200MB", 200e6, true}, {"1.5GB", 1.5e9, true}, {"0", 0, true}, {"64KB", 64e3, true}, {"fast", 0, false}, {"-1MB", 0, false},
	} {
		got, err := parseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseRate(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
