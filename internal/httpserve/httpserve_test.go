package httpserve

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// startServer runs s.Serve(ctx) in a goroutine; the returned func cancels
// and waits for Serve's result.
func startServer(t *testing.T, cfg Config) (*Server, func() error) {
	t.Helper()
	if cfg.Addr == "" && cfg.Listener == nil {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			serveErr = <-errc
		})
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func TestServeGracefulShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	shutdown := make(chan struct{})
	body := strings.Repeat("x", 1<<20)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		_, _ = io.WriteString(w, body)
	})
	s, stop := startServer(t, Config{Handler: h, OnShutdown: func() { close(shutdown) }})

	type result struct {
		body string
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr().String() + "/")
		if err != nil {
			resc <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		resc <- result{string(b), err}
	}()
	<-started
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	<-shutdown
	// New connections are refused once shutdown started.
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		// The listener may still be closing; a refused request is what matters.
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + s.Addr().String() + "/")
		if err == nil {
			resp.Body.Close()
			t.Errorf("request after shutdown started: got %s, want connection error", resp.Status)
		}
	}
	close(release)
	res := <-resc
	if res.err != nil || res.body != body {
		t.Errorf("in-flight request: err %v, %d bytes; want the whole body", res.err, len(res.body))
	}
	if err := <-stopped; err != nil {
		t.Errorf("Serve = %v, want nil after graceful shutdown", err)
	}
}

func TestServeDrainTimeoutCutsConnections(t *testing.T) {
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		close(started)
		<-r.Context().Done() // never finishes by itself
	})
	s, stop := startServer(t, Config{Handler: h, DrainTimeout: time.Millisecond})
	resp, err := http.Get("http://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	<-started
	if err := stop(); err == nil {
		t.Errorf("Serve = nil, want a drain error")
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("reading the cut response: no error")
	}
}

func TestServeTLSSpeaksHTTP2(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Proto) })
	s, _ := startServer(t, Config{Handler: h, TLSCertFile: certFile, TLSKeyFile: keyFile})
	if !s.TLS() {
		t.Fatal("TLS() = false")
	}
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}}
	resp, err := c.Get("https://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.ProtoMajor != 2 || string(b) != "HTTP/2.0" {
		t.Errorf("proto = %s (server saw %q), want HTTP/2.0", resp.Proto, b)
	}
}

func TestNewRejectsHalfTLS(t *testing.T) {
	_, err := New(Config{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(), TLSCertFile: "x.pem"})
	if err == nil {
		t.Error("New with a certificate and no key: nil error")
	}
}

func writeCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	return writeCertSerial(t, dir, 1)
}

func writeCertSerial(t *testing.T, dir string, serial int64) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

var combined = regexp.MustCompile(`^(\S+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" (\d{3}) (\d+|-) "([^"]*)" "([^"]*)"$`)

func TestAccessLogCombinedFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	h := Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "hello")
	}), al, nil, 0)
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		name, path, ua, referer string
		wantStatus, wantBytes   string
		wantReq, wantUA         string
	}{
		{name: "ok", path: "/a/b.pkg", ua: "pkg/2.8", referer: "", wantStatus: "200", wantBytes: "5",
			wantReq: "GET /a/b.pkg HTTP/1.1", wantUA: "pkg/2.8"},
		{name: "404 with referer", path: "/missing", ua: "curl", referer: "http://x/", wantStatus: "404", wantBytes: "19",
			wantReq: "GET /missing HTTP/1.1", wantUA: "curl"},
		{name: "hostile user agent", path: "/q?x=1", ua: `evil" 200 1 "x\`, wantStatus: "200", wantBytes: "5",
			wantReq: "GET /q?x=1 HTTP/1.1", wantUA: `evil\x22 200 1 \x22x\x5C`},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest("GET", srv.URL+tt.path, nil)
		req.Header.Set("User-Agent", tt.ua)
		req.Header.Set("Authorization", "Bearer sekrit-token")
		if tt.referer != "" {
			req.Header.Set("Referer", tt.referer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	srv.Close() // every handler done, every line logged
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("sekrit")) {
		t.Errorf("access log contains the bearer token:\n%s", b)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != len(tests) {
		t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), len(tests), b)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := combined.FindStringSubmatch(lines[i])
			if m == nil {
				t.Fatalf("line %q is not in the Combined Log Format", lines[i])
			}
			if _, err := time.Parse("02/Jan/2006:15:04:05 -0700", m[2]); err != nil {
				t.Errorf("time %q: %v", m[2], err)
			}
			wantRef := tt.referer
			if wantRef == "" {
				wantRef = "-"
			}
			got := []string{m[1], m[3], m[4], m[5], m[6], m[7]}
			want := []string{"127.0.0.1", tt.wantReq, tt.wantStatus, tt.wantBytes, wantRef, tt.wantUA}
			for j := range got {
				if got[j] != want[j] {
					t.Errorf("field %d of %q = %q, want %q", j, lines[i], got[j], want[j])
				}
			}
		})
	}
}

func TestAccessLogReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	al, err := OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	req := httptest.NewRequest("GET", "/one", nil) // buffered, written by Reopen
	al.Log(req, time.Now(), 200, 1)
	if err := os.Rename(path, path+".0"); err != nil {
		t.Fatal(err)
	}
	al.Log(httptest.NewRequest("GET", "/two", nil), time.Now(), 200, 1) // still to the renamed file
	if err := al.Reopen(); err != nil {
		t.Fatal(err)
	}
	al.Log(httptest.NewRequest("GET", "/three", nil), time.Now(), 200, 1)
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(path + ".0")
	cur, _ := os.ReadFile(path)
	if !strings.Contains(string(old), "/one") || !strings.Contains(string(old), "/two") || strings.Contains(string(old), "/three") {
		t.Errorf("rotated file:\n%s\nwant /one and /two only", old)
	}
	if !strings.Contains(string(cur), "/three") || strings.Contains(string(cur), "/one") {
		t.Errorf("reopened file:\n%s\nwant /three only", cur)
	}
}

func TestInstrumentObservesAndKeepsRanges(t *testing.T) {
	data := make([]byte, 3*StallChunk+12345)
	for i := range data {
		data[i] = byte(i * 7)
	}
	f := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	type obs struct {
		status int
		n      int64
		set    string
	}
	var mu sync.Mutex
	var seen []obs
	observe := func(r *http.Request, status int, n int64, h http.Header) {
		mu.Lock()
		seen = append(seen, obs{status, n, h.Get("X-Set")})
		mu.Unlock()
	}
	h := Instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh, err := os.Open(f)
		if err != nil {
			t.Error(err)
			return
		}
		defer fh.Close()
		w.Header().Set("X-Set", "s1")
		http.ServeContent(w, r, "big", time.Time{}, fh)
	}), nil, observe, time.Minute)
	srv := httptest.NewServer(h)
	defer srv.Close()

	tests := []struct {
		name, rng  string
		wantStatus int
		want       []byte
	}{
		{"whole file", "", 200, data},
		{"range in the middle", fmt.Sprintf("bytes=%d-%d", StallChunk-10, 2*StallChunk+10), 206, data[StallChunk-10 : 2*StallChunk+11]},
		{"suffix", "bytes=-100", 206, data[len(data)-100:]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != tt.wantStatus || !bytes.Equal(got, tt.want) {
				t.Errorf("GET %s: %d, %d bytes, err %v; want %d, %d bytes", tt.rng, resp.StatusCode, len(got), err, tt.wantStatus, len(tt.want))
			}
		})
	}
	srv.Close() // waits for handlers, so every observation is in
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(tests) {
		t.Fatalf("observed %d requests, want %d", len(seen), len(tests))
	}
	for i, tt := range tests {
		if seen[i] != (obs{tt.wantStatus, int64(len(tt.want)), "s1"}) {
			t.Errorf("observation %d = %+v, want {%d %d s1}", i, seen[i], tt.wantStatus, len(tt.want))
		}
	}
}

func TestStallTimeoutCutsStalledReader(t *testing.T) {
	werr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Far more than socket buffers hold: the writes block on a client
		// that never reads, until the stall deadline cuts them.
		buf := make([]byte, 1<<20)
		for range 512 {
			if _, err := w.Write(buf); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	})
	s, _ := startServer(t, Config{Handler: h, StallTimeout: 50 * time.Millisecond})
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Never read from c.
	if err := <-werr; err == nil {
		t.Error("writing 512 MiB to a client that never reads: no error, want the stall deadline")
	} else if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Logf("write error: %v", err) // the deadline may surface as a broken pipe
	}
}

func TestAdminHandler(t *testing.T) {
	var health Health
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "pkgcdn_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	srv := httptest.NewServer(AdminHandler(&health, reg, false))
	defer srv.Close()

	getHealth := func() HealthStatus {
		t.Helper()
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("/healthz: %s %s", resp.Status, resp.Header.Get("Content-Type"))
		}
		var st HealthStatus
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := getHealth(); st.Status != "ok" || st.Degraded {
		t.Errorf("fresh health = %+v, want ok", st)
	}
	health.SetDegraded("expired:a", "set a: live manifest expired")
	if st := getHealth(); st.Status != "degraded" || !st.Degraded || len(st.Reasons) != 1 || st.Reasons[0] != "set a: live manifest expired" {
		t.Errorf("degraded health = %+v", st)
	}
	health.ClearDegraded("expired:a")
	if st := getHealth(); st.Degraded {
		t.Errorf("cleared health = %+v, want ok", st)
	}

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "pkgcdn_test_total 3") {
		t.Errorf("/metrics does not show the registry's counter:\n%s", b)
	}

	tests := []struct {
		name, method, path string
		wantStatus         int
		wantAllow          string
	}{
		{"post healthz", "POST", "/healthz", 405, "GET, HEAD"},
		{"delete metrics", "DELETE", "/metrics", 405, "GET, HEAD"},
		{"unknown path", "GET", "/nope", 404, ""},
		{"profiler off by default", "GET", "/debug/pprof/heap", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Allow") != tt.wantAllow {
				t.Errorf("%s %s = %d Allow %q, want %d Allow %q", tt.method, tt.path, resp.StatusCode, resp.Header.Get("Allow"), tt.wantStatus, tt.wantAllow)
			}
		})
	}
}

func TestAdminHandlerProfiler(t *testing.T) {
	srv := httptest.NewServer(AdminHandler(nil, prometheus.NewRegistry(), true))
	defer srv.Close()
	for _, tt := range []struct {
		path, want string
		status     int
	}{
		{"/debug/pprof/", "goroutine", 200},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:", 200},
		{"/debug/pprof/cmdline", "", 200},
		{"/debug/pprof/nosuch", "", 404},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
			t.Errorf("GET %s = %d %.80q, want %d containing %q", tt.path, resp.StatusCode, b, tt.status, tt.want)
		}
	}
}

func TestMethods(t *testing.T) {
	h := Methods(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }), "GET", "HEAD")
	tests := []struct {
		method     string
		wantStatus int
	}{{"GET", 200}, {"HEAD", 200}, {"POST", 405}, {"PROPFIND", 405}, {"OPTIONS", 405}}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, "/", nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("%s = %d, want %d", tt.method, rec.Code, tt.wantStatus)
			}
			if tt.wantStatus == 405 && rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s: Allow = %q, want \"GET, HEAD\"", tt.method, rec.Header().Get("Allow"))
			}
		})
	}
}

// TestStallDeadlineCountsFromTheAnswer: a handler that answers only after
// longer than StallTimeout (a long-poll) still gets its answer out: the
// deadline runs from the writes, not from the start of the request.
func TestStallDeadlineCountsFromTheAnswer(t *testing.T) {
	// Long enough that a busy machine does not stall the one write of the
	// answer by itself.
	const stall = 250 * time.Millisecond
	for _, withBody := range []bool{false, true} {
		t.Run(fmt.Sprint("body ", withBody), func(t *testing.T) {
			t.Parallel()
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-time.After(3 * stall) // the wait under test, not a synchronization
				if withBody {
					_, _ = io.WriteString(w, "late")
					return
				}
				w.WriteHeader(http.StatusNotModified)
			})
			s, _ := startServer(t, Config{Handler: h, StallTimeout: stall})
			resp, err := http.Get("http://" + s.Addr().String() + "/")
			if err != nil {
				t.Fatalf("late answer lost: %v", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := http.StatusNotModified
			if withBody {
				want = http.StatusOK
			}
			if err != nil || resp.StatusCode != want || (withBody && string(b) != "late") {
				t.Errorf("late answer: %s %q %v, want %d", resp.Status, b, err, want)
			}
		})
	}
}

func TestServeTLSReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool1 := writeCertSerial(t, dir, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	s, _ := startServer(t, Config{Handler: h, TLSCertFile: certFile, TLSKeyFile: keyFile})
	serial := func(pool *x509.CertPool) int64 {
		t.Helper()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + s.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(pool1); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	_, _, pool2 := writeCertSerial(t, dir, 2) // renewed in place
	if got := serial(pool1); got != 1 {
		t.Errorf("before ReloadTLS: serial %d, want 1", got)
	}
	if err := s.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got := serial(pool2); got != 2 {
		t.Errorf("after ReloadTLS: serial %d, want 2", got)
	}
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.ReloadTLS(); err == nil {
		t.Error("ReloadTLS of a broken key: nil error")
	}
	if got := serial(pool2); got != 2 {
		t.Errorf("after a failed ReloadTLS: serial %d, want 2 still", got)
	}
}

func TestAccessLogCloseWritesBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		al.Log(httptest.NewRequest("GET", fmt.Sprintf("/f%d", i), nil), time.Now(), 200, int64(i))
	}
	if err := al.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 1000 {
		t.Errorf("%d lines after Close, want 1000", n)
	}
}
