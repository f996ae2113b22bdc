package httpserve

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWriteWholeOneWrite: through a Server, a whole response of up to
// MaxWholeBytes leaves in one write(2), with the right bytes, for GET and
// HEAD, request after request on one keep-alive connection; a bigger one
// is still right.
func TestWriteWholeOneWrite(t *testing.T) {
	writes := make(chan int, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		c := r.Context().Value(connKey{}).(*holdConn)
		before := c.writes
		w.Header().Set("X-Test", "yes")
		if err := WriteWhole(w, r, http.StatusOK, []byte(strings.Repeat("x", n))); err != nil {
			panic(http.ErrAbortHandler)
		}
		writes <- c.writes - before
	})
	s, _ := startServer(t, Config{Handler: h})
	c := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer c.CloseIdleConnections()
	tests := []struct {
		name   string
		method string
		n      int
		one    bool // exactly one write(2)
	}{
		{"empty", "GET", 0, true},
		{"small", "GET", 100, true},
		{"4 KiB", "GET", 4096, true},
		{"past net/http's buffers", "GET", 70000, true},
		{"largest", "GET", MaxWholeBytes, true},
		{"too large for one", "GET", MaxWholeBytes + 1, false},
		{"head", "HEAD", 4096, true},
		{"4 KiB again", "GET", 4096, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, fmt.Sprintf("http://%s/?n=%d", s.Addr(), tt.n), nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := strings.Repeat("x", tt.n)
			if tt.method == "HEAD" {
				want = ""
			}
			if err != nil || string(body) != want || resp.ContentLength != int64(tt.n) || resp.Header.Get("X-Test") != "yes" {
				t.Errorf("%s n=%d: %s, %d bytes, Content-Length %d, err %v", tt.method, tt.n, resp.Status, len(body), resp.ContentLength, err)
			}
			if got := <-writes; tt.one && got != 1 {
				t.Errorf("%s n=%d: %d write(2) calls, want 1", tt.method, tt.n, got)
			}
		})
	}
}

// TestWriteWholeThenSendfile: a connection that answered with WriteWhole
// still serves a file with sendfile afterwards (and the other way round),
// and every byte is in order.
func TestWriteWholeThenSendfile(t *testing.T) {
	var big strings.Builder
	for i := 0; big.Len() < 3*StallChunk; i++ {
		fmt.Fprintf(&big, "%08d\n", i)
	}
	p := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(p, []byte(big.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/file" {
			http.ServeFile(w, r, p)
			return
		}
		if err := WriteWhole(w, r, http.StatusOK, []byte("small body")); err != nil {
			panic(http.ErrAbortHandler)
		}
	})
	s, _ := startServer(t, Config{Handler: h})
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i, path := range []string{"/small", "/file", "/small", "/small", "/file"} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d %s: %v", i, path, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := "small body"
		if path == "/file" {
			want = big.String()
		}
		if err != nil || string(body) != want {
			t.Fatalf("request %d %s: %s, %d bytes, want %d, err %v", i, path, resp.Status, len(body), len(want), err)
		}
	}
}

// TestWriteWholeWithoutOneWriteListener: under a plain httptest server (no
// wrapper), through Instrument, WriteWhole writes the usual way.
func TestWriteWholeWithoutOneWriteListener(t *testing.T) {
	body := strings.Repeat("y", 5000)
	ts := httptest.NewServer(Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := WriteWhole(w, r, http.StatusNotFound, []byte(body)); err != nil {
			panic(http.ErrAbortHandler)
		}
	}), nil, nil, time.Minute))
	defer ts.Close()
	for _, method := range []string{"GET", "HEAD"} {
		req, _ := http.NewRequest(method, ts.URL, nil)
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := body
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != 404 || string(got) != want || resp.ContentLength != 5000 {
			t.Errorf("%s: %s, %d bytes, Content-Length %d", method, resp.Status, len(got), resp.ContentLength)
		}
	}
}

// TestWriteWholeStalledReader: a held response to a client that reads
// nothing is cut off by the stall deadline like any other write: WriteWhole
// returns an error instead of blocking forever.
func TestWriteWholeStalledReader(t *testing.T) {
	errc := make(chan error, 64)
	body := []byte(strings.Repeat("z", MaxWholeBytes))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := WriteWhole(w, r, http.StatusOK, body)
		errc <- err
		if err != nil {
			panic(http.ErrAbortHandler)
		}
	})
	s, _ := startServer(t, Config{Handler: h, StallTimeout: 200 * time.Millisecond})
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Pipelined requests, never read: the socket buffers fill up and a
	// write must eventually stall.
	if err := conn.(*net.TCPConn).SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range 64 {
			if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				return
			}
		}
	}()
	for i := 1; ; i++ {
		if err := <-errc; err != nil {
			return // cut off, as wanted
		}
		if i == 64 {
			t.Fatal("64 responses to a client that reads nothing all went out")
		}
	}
}

// noFlush is a ResponseWriter wrapper that cannot flush.
type noFlush struct{ http.ResponseWriter }

// TestWriteWholeThroughAWriterThatCannotFlush: a wrapper without Flush
// (or Unwrap) costs the one write, not the response.
func TestWriteWholeThroughAWriterThatCannotFlush(t *testing.T) {
	body := strings.Repeat("n", 10000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := WriteWhole(noFlush{w}, r, http.StatusOK, []byte(body)); err != nil {
			panic(http.ErrAbortHandler)
		}
	})
	s, _ := startServer(t, Config{Handler: h})
	for range 2 {
		resp, err := http.Get("http://" + s.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != body {
			t.Fatalf("GET: %s, %d bytes, %v", resp.Status, len(got), err)
		}
	}
}
