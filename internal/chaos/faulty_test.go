package chaos

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// fault is what the faulty upstream does to one object request.
type fault int

const (
	faultNone       fault = iota
	faultCloseMid         // right Content-Length, half the body, then the connection closes
	faultStallHead        // never answers (until the edge gives up)
	faultStallMid         // half the body, then nothing (until the edge gives up)
	faultWrongBytes       // right length, one byte flipped near the end
	faultWrongEarly       // right length, one byte flipped at the start
	faultLonger           // Content-Length and body 100 bytes longer than the object
	faultFewer            // Content-Length right, 100 bytes missing, then the connection closes
	faultShort            // Content-Length and body 100 bytes short: a clean, short response
	fault500              // 500 Internal Server Error
	fault503              // 503 Service Unavailable
	fault404              // 404 for an object the manifest lists
	faultRefuse           // the connection is closed before any answer
	faultGate             // right answer, but the second half waits for release()
	faultMore             // Content-Length right, 100 junk bytes after the body
)

func (f fault) String() string {
	return [...]string{"none", "close mid-file", "stall before headers", "stall mid-file", "wrong bytes (end)",
		"wrong bytes (start)", "longer than the object", "fewer bytes than Content-Length", "short Content-Length",
		"500", "503", "404", "connection refused", "gated", "more bytes than Content-Length"}[f]
}

// faulty is an HTTP upstream written for the tests: it passes everything to
// the master (SETS, long-polls, manifests) except object requests, which it
// answers itself from the master's root on disk, mangled by the fault set
// for that object (by sha256; "*" for every object). It counts object
// requests.
type faulty struct {
	url    string
	root   string
	proxy  *httputil.ReverseProxy
	mu     sync.Mutex       // guards faults, times
	faults map[string]fault // sha256 (or "*") → fault
	times  map[string]int   // sha256 → answers left with the fault; 0: forever
	hits   atomic.Int64     // object requests seen
	stop   chan struct{}    // closed at the end: releases stalls
	gate   chan struct{}    // closed by release: gated objects complete
	gated  chan struct{}    // closed when the first half of a gated object was sent
	once   sync.Once        // guards closing gated
	srv    *http.Server
}

func newFaulty(t testing.TB, master, root string) *faulty {
	t.Helper()
	u, err := url.Parse(master)
	if err != nil {
		t.Fatal(err)
	}
	f := &faulty{root: root, faults: map[string]fault{}, times: map[string]int{}, stop: make(chan struct{}),
		gate: make(chan struct{}), gated: make(chan struct{})}
	f.proxy = httputil.NewSingleHostReverseProxy(u)
	f.proxy.FlushInterval = -1
	f.proxy.ErrorLog = log.New(io.Discard, "", 0) // an edge hanging up a long-poll is not news
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + ln.Addr().String()
	f.srv = &http.Server{Handler: f}
	go func() { _ = f.srv.Serve(ln) }()
	t.Cleanup(func() {
		close(f.stop)
		_ = f.srv.Close()
	})
	return f
}

// set makes the next n object requests for hash (n == 0: all) fail with fl.
func (f *faulty) set(hash string, fl fault, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[hash], f.times[hash] = fl, n
}

func (f *faulty) take(hash string) fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := hash
	fl, ok := f.faults[key]
	if !ok {
		key = "*"
		if fl, ok = f.faults[key]; !ok {
			return faultNone
		}
	}
	if n := f.times[key]; n > 0 {
		if n == 1 {
			delete(f.faults, key)
		}
		f.times[key] = n - 1
	}
	return fl
}

const objectPrefix = "/.pkgcdn/objects/sha256/"

// pathFault returns the fault set for a set file's URL path (plain-mode
// edges ask for paths, not objects); only exact paths, no "*".
func (f *faulty) pathFault(path string) fault {
	f.mu.Lock()
	_, ok := f.faults[path]
	f.mu.Unlock()
	if !ok {
		return faultNone
	}
	return f.take(path)
}

func (f *faulty) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hash, ok := strings.CutPrefix(r.URL.Path, objectPrefix)
	var fl fault
	var file string
	switch {
	case ok:
		f.hits.Add(1)
		fl = f.take(hash)
		if len(hash) != 64 || strings.ContainsAny(hash, "/.") {
			http.NotFound(w, r)
			return
		}
		file = filepath.Join(f.root, "objects", "sha256", hash[:2], hash)
	default:
		rel, inSet := strings.CutPrefix(r.URL.Path, "/"+testSet+"/")
		if fl = f.pathFault(r.URL.Path); fl == faultNone || !inSet || strings.Contains(rel, "..") {
			f.proxy.ServeHTTP(w, r)
			return
		}
		f.hits.Add(1)
		file = filepath.Join(f.root, "sets", filepath.FromSlash(testSet), "current", filepath.FromSlash(rel))
	}
	body, err := os.ReadFile(file)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	hash = digest.Sum(body).String()
	switch fl {
	case faultNone:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("ETag", `"`+hash+`"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
		return
	case fault500, fault503, fault404:
		http.Error(w, "fault", map[fault]int{fault500: 500, fault503: 503, fault404: 404}[fl])
		return
	case faultStallHead:
		select {
		case <-r.Context().Done():
		case <-f.stop:
		}
		return
	}
	conn, buf := hijack(w)
	defer conn.Close()
	if fl == faultRefuse {
		return
	}
	n := len(body)
	switch fl {
	case faultWrongBytes:
		body[n-1-n/100] ^= 0x55
	case faultWrongEarly:
		body[10] ^= 0x55
	case faultLonger:
		body = append(body, strings.Repeat("X", 100)...)
		n = len(body)
	case faultShort:
		body = body[:n-100]
		n = len(body)
	case faultFewer:
		body = body[:n-100]
	case faultMore:
		body = append(body, strings.Repeat("J", 100)...)
	case faultCloseMid, faultStallMid:
		body = body[:n/2]
	case faultGate:
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", n)
		_, _ = buf.Write(body[:n/2])
		_ = buf.Flush()
		f.once.Do(func() { close(f.gated) })
		select {
		case <-f.gate:
		case <-f.stop:
			return
		}
		_, _ = buf.Write(body[n/2:])
		_ = buf.Flush()
		return
	}
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nETag: \"%s\"\r\nConnection: close\r\n\r\n", n, hash)
	_, _ = buf.Write(body)
	_ = buf.Flush()
	if fl == faultStallMid {
		// Keep the connection open and silent until the edge hangs up.
		gone := make(chan struct{})
		go func() { _, _ = io.Copy(io.Discard, conn); close(gone) }()
		select {
		case <-gone:
		case <-f.stop:
		}
	}
}

// release lets gated objects complete.
func (f *faulty) release() { close(f.gate) }

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	return conn, buf
}
