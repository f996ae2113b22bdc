package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/loadgen"
)

// server answers "hello <path>" and records the escaped paths it saw.
func server(t *testing.T) (*httptest.Server, func() map[string]int) {
	t.Helper()
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.EscapedPath()]++
		mu.Unlock()
		_, _ = w.Write([]byte("hello " + r.URL.Path))
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return seen
	}
}

func loadgenRun(t *testing.T, args ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := run(t.Context(), args, &buf); err != nil {
		t.Fatalf("loadgen %v: %v", args, err)
	}
	return buf.Bytes()
}

func TestReadPaths(t *testing.T) {
	f := filepath.Join(t.TempDir(), "paths")
	if err := os.WriteFile(f, []byte("All/a.pkg\n\n/All/b c.pkg\nLatest/pkg~1.pkg \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := readPaths("http://h/set/", f)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://h/set/All/a.pkg", "http://h/set/All/b%20c.pkg", "http://h/set/Latest/pkg~1.pkg"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("readPaths = %q, want %q", got, want)
	}
	if _, err := readPaths("http://h", filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("missing paths file: no error")
	}
}

func TestDistinctAndHammer(t *testing.T) {
	srv, seen := server(t)
	f := filepath.Join(t.TempDir(), "paths")
	if err := os.WriteFile(f, []byte("a\nb\nc d\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var res loadgen.Result
	if err := json.Unmarshal(loadgenRun(t, "distinct", "-conns", "2", "-base", srv.URL, "-paths", f), &res); err != nil {
		t.Fatal(err)
	}
	if res.Requests != 3 || res.Errors != 0 {
		t.Errorf("distinct over 3 paths: %+v", res)
	}
	if s := seen(); s["/a"] != 1 || s["/b"] != 1 || s["/c%20d"] != 1 {
		t.Errorf("distinct requested %v, want each path once", s)
	}

	out := loadgenRun(t, "hammer", "-conns", "2", "-max", "20", "-o", "text", srv.URL+"/x")
	if !strings.Contains(string(out), "requests") || !strings.Contains(string(out), "req/s") {
		t.Errorf("hammer -o text printed %q", out)
	}
	if n := seen()["/x"]; n < 20 {
		t.Errorf("hammer -max 20: server saw %d requests", n)
	}
}

func TestHerdAndWaitfor(t *testing.T) {
	srv, _ := server(t)
	body := []byte("hello /f")
	sum := digest.Sum(body).String()
	var res loadgen.HerdResult
	if err := json.Unmarshal(loadgenRun(t, "herd", "-clients", "4", "-sha256", sum, "-size", strconv.Itoa(len(body)), srv.URL+"/f"), &res); err != nil {
		t.Fatal(err)
	}
	if res.OK != 4 || res.Failed != 0 {
		t.Errorf("herd of 4 on a good body: ok %d failed %d", res.OK, res.Failed)
	}
	if err := json.Unmarshal(loadgenRun(t, "herd", "-clients", "2", "-sha256", digest.Sum([]byte("other")).String(), srv.URL+"/f"), &res); err != nil {
		t.Fatal(err)
	}
	if res.Failed != 2 {
		t.Errorf("herd expecting other bytes: failed %d, want 2", res.Failed)
	}
	if out := loadgenRun(t, "waitfor", "-sha256", sum, srv.URL+"/f"); !strings.Contains(string(out), ".") {
		t.Errorf("waitfor printed %q, want a Unix time", out)
	}
}

func TestPorts(t *testing.T) {
	ports := strings.Fields(string(loadgenRun(t, "ports", "5")))
	if len(ports) != 5 {
		t.Fatalf("ports 5 printed %q", ports)
	}
	uniq := map[string]bool{}
	for _, p := range ports {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			t.Errorf("not a port: %q", p)
		}
		uniq[p] = true
	}
	if len(uniq) != 5 {
		t.Errorf("ports repeat: %q", ports)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"fly"},
		{"herd"},
		{"waitfor", "http://127.0.0.1:1/"},
		{"herd", "-sha256", "zz", "http://127.0.0.1:1/"},
		{"ports", "many"},
	} {
		if err := run(t.Context(), args, new(bytes.Buffer)); err == nil {
			t.Errorf("loadgen %q: no error", args)
		}
	}
}
