package chaos

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
	"github.com/pkgcdn/pkgcdn/manifest"
)

// secret is planted next to (and inside) the served trees: no response may
// ever carry it.
const secret = "CHAOS-SECRET-4f1d9c"

// rawResponse is a response to a request written byte for byte.
type rawResponse struct {
	status int
	body   []byte
	err    error
}

// raw sends req as written (no client normalises the path) on a new
// connection and reads one response.
func raw(addr, req string) rawResponse {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return rawResponse{err: err}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return rawResponse{err: err}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return rawResponse{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return rawResponse{status: resp.StatusCode, body: b, err: err}
}

func get1(path string, hdr ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: chaos\r\n" + strings.Join(hdr, "") + "Connection: close\r\n\r\n"
}

// rss returns a process's resident set (VmRSS) and peak (VmHWM) in bytes.
func rss(t testing.TB, pid int) (cur, peak int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/status (the memory bounds need Linux /proc): %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			cur = n << 10
		case "VmHWM:":
			peak = n << 10
		}
	}
	return cur, peak
}

// fds returns how many file descriptors a process has open.
func fds(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("read /proc/%d/fd: %v", pid, err)
	}
	return len(ents)
}

// TestHostileRequests attacks a master and an edge with what the Internet
// sends: path traversal in every encoding (.., %2e%2e, %2f, backslashes,
// NUL, overlong UTF-8, //, paths into the root's internals), absurd,
// overlapping and many Range headers, a header over MaxHeaderBytes, a flood
// of headers, request smuggling (conflicting Content-Length and
// Transfer-Encoding), unknown and unsupported methods, and slowloris. What
// must hold: each gets the right 4xx (never a 200 or a 5xx), a secret file
// planted next to the root, inside it and next to the cache is never
// returned, ranges are right or refused, a slowloris connection is cut
// (read returns EOF) once the header timeout passes, and after a flood the
// server's RSS stays under 256 MiB.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	p := publishSet(t, 19, 20, 2*sampleset.MiB)
	cache := p.e.path("cache")
	edge := p.e.startEdge(t, cache, []string{p.master.url})
	p.e.waitSet(t, edge.url, p.m.ID)
	for _, f := range []string{p.e.path("secret"), filepath.Join(p.root, "secret"), filepath.Join(p.root, "staging", "secret"),
		filepath.Join(cache, "secret"), p.e.path("secret\\x")} {
		if err := os.WriteFile(f, []byte(secret), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := p.bySize()[0]
	for _, srv := range []struct {
		name string
		s    *server
	}{{"master", p.master}, {"edge", edge}} {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			hostile(t, srv.s, big)
		})
	}
}

func hostile(t *testing.T, s *server, big manifest.Entry) {
	addr := strings.TrimPrefix(s.url, "http://")
	set := "/" + testSet
	bad := func(st int) bool { return st >= 400 && st < 500 }
	t.Run("paths", func(t *testing.T) {
		for _, path := range []string{
			"/../secret", "/../../../../etc/passwd", set + "/../../../secret", set + "/../../secret",
			"/%2e%2e/secret", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", set + "/%2e%2e/%2e%2e/%2e%2e/secret",
			set + "/..%2f..%2f..%2fsecret", set + "/%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret", "/%2fetc%2fpasswd",
			set + "/..\\..\\..\\secret", set + "/%5c..%5c..%5csecret", "/..%5csecret",
			set + "/meta.conf%00", set + "/%00/../../secret", "/%00",
			set + "/%c0%ae%c0%ae/%c0%ae%c0%ae/secret", "/%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%afsecret", "/%e0%80%ae%e0%80%ae/secret",
			"//secret", "//etc/passwd", "///../secret", set + "//..//..//..//secret",
			"/secret", "/SETS.minisig/../secret", "/staging/secret", "/sets/" + testSet + "/current/meta.conf",
			"/objects/sha256/", "/.lock", "/.pkgcdn/../secret", "/.pkgcdn/objects/sha256/../../../../secret",
			"/.pkgcdn/objects/sha256/" + strings.Repeat("0", 64), "/.pkgcdn/manifest/" + testSet + "/../../../secret",
			"/.pkgcdn/publish/../../secret", "/data/secret", "/state/secret", "/" + strings.Repeat("a/", 3000),
			set + "/", set, "/.pkgcdn/", "/.pkgcdn/objects/",
		} {
			r := raw(addr, get1(path))
			switch {
			case r.err != nil && r.status == 0:
				// A connection closed on a request line Go refuses is fine.
			case !bad(r.status):
				t.Errorf("GET %s: status %d, want a 4xx", path, r.status)
			}
			if bytes.Contains(r.body, []byte(secret)) {
				t.Errorf("GET %s returned the secret", path)
			}
		}
	})
	t.Run("ranges", func(t *testing.T) {
		u := set + "/" + big.Path
		whole := do(http.MethodGet, s.url+u, nil)
		if whole.status != http.StatusOK || digest.Sum(whole.body) != big.SHA256 {
			t.Fatalf("GET %s: %d", u, whole.status)
		}
		many := make([]string, 2000)
		for i := range many {
			many[i] = fmt.Sprintf("%d-%d", i, i)
		}
		for _, rg := range []string{
			"bytes=" + strings.Join(many, ","), "bytes=0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-,0-",
			"bytes=0-10,5-15,10-20,0-", "bytes=999999999999999-", "bytes=-0", "bytes=abc",
			"bytes=5-1", "bytes=" + strings.Repeat("0", 10000) + "-1", "bytes=-99999999999999999999", "items=0-1",
			"bytes=0-0,-1", "bytes=100-",
		} {
			r := do(http.MethodGet, s.url+u, nil, "Range", rg)
			if r.err != nil {
				t.Errorf("Range %.40s: %v", rg, r.err)
				continue
			}
			switch r.status {
			case http.StatusOK:
				if digest.Sum(r.body) != big.SHA256 {
					t.Errorf("Range %.40s: a 200 with the wrong bytes", rg)
				}
			case http.StatusPartialContent:
				if rg == "bytes=100-" && !bytes.Equal(r.body, whole.body[100:]) {
					t.Errorf("Range %s: wrong bytes", rg)
				}
				if len(r.body) > 4*len(whole.body) {
					t.Errorf("Range %.40s: %d bytes for a %d-byte file", rg, len(r.body), len(whole.body))
				}
			case http.StatusRequestedRangeNotSatisfiable:
			default:
				t.Errorf("Range %.40s: status %d", rg, r.status)
			}
		}
	})
	t.Run("headers", func(t *testing.T) {
		r := raw(addr, get1(set+"/meta.conf", "X-Huge: "+strings.Repeat("a", 100<<10)+"\r\n"))
		if r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("a 100 KiB header: status %d, err %v; want 431", r.status, r.err)
		}
		var flood strings.Builder
		for i := range 10000 {
			fmt.Fprintf(&flood, "X-F%d: v\r\n", i)
		}
		if r := raw(addr, get1(set+"/meta.conf", flood.String())); r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("10000 headers: status %d, err %v; want 431", r.status, r.err)
		}
	})
	t.Run("smuggling", func(t *testing.T) {
		for _, req := range []string{
			"POST " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\nX",
			"POST " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\nGET /secret HTTP/1.1\r\nHost: x\r\n\r\n",
			"POST " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\nConnection: close\r\n\r\n0\r\n\r\n",
			"POST " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
			"GET " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n",
			"GET " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n",
		} {
			r := raw(addr, req)
			// 501 is RFC 9112's answer to a transfer coding not understood.
			if r.err == nil && !bad(r.status) && r.status != http.StatusNotImplemented {
				t.Errorf("%q: status %d, want a 4xx or 501", req, r.status)
			}
			if bytes.Contains(r.body, []byte(secret)) {
				t.Errorf("%q returned the secret", req)
			}
		}
	})
	t.Run("methods", func(t *testing.T) {
		for _, method := range []string{"FOO", "DELETE", "PUT", "PATCH", "TRACE", "CONNECT", "PROPFIND", "OPTIONS"} {
			req := method + " " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
			r := raw(addr, req)
			if r.err == nil && r.status != http.StatusMethodNotAllowed && r.status != http.StatusNotImplemented && r.status != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 405 or 501", method, r.status)
			}
		}
	})
	t.Run("slowloris", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Only a safety net against a hang: the server must cut us first.
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Minute))
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			hdr := "GET " + set + "/meta.conf HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
			for i := range len(hdr) {
				if _, err := c.Write([]byte{hdr[i]}); err != nil {
					return
				}
				select {
				case <-done:
					return
				case <-time.After(100 * time.Millisecond): // the attack's pace, not a synchronisation
				}
			}
		})
		_, err = io.Copy(io.Discard, c)
		close(done)
		wg.Wait()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("a slowloris connection was never cut by the server")
		}
	})
	t.Run("memory", func(t *testing.T) {
		many := make([]string, 200)
		for i := range many {
			many[i] = fmt.Sprintf("%d-%d", i*3, i*3+1)
		}
		rg := "bytes=" + strings.Join(many, ",")
		before, _ := rss(t, s.p.Pid())
		var wg sync.WaitGroup
		for c := range 32 {
			wg.Go(func() {
				for i := range 60 {
					switch (c + i) % 3 {
					case 0:
						do(http.MethodGet, s.url+set+"/"+big.Path, nil, "Range", rg)
					case 1:
						raw(addr, get1(set+"/meta.conf", "X-Huge: "+strings.Repeat("a", 60<<10)+"\r\n"))
					default:
						raw(addr, get1(set+"/%2e%2e/"+strings.Repeat("x", 3000)))
					}
				}
			})
		}
		wg.Wait()
		cur, peak := rss(t, s.p.Pid())
		t.Logf("%s: RSS %d MiB before a flood, %d MiB after, peak %d MiB, %d fds", s.p.Name, before>>20, cur>>20, peak>>20, fds(t, s.p.Pid()))
		if cur > 256<<20 || peak > 256<<20 {
			t.Errorf("RSS %d MiB, peak %d MiB after a flood; want < 256 MiB", cur>>20, peak>>20)
		}
	})
}
