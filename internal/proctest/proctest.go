// Package proctest runs the real pkgcdn binaries as separate processes for
// the end-to-end (internal/e2e) and reliability (internal/chaos) suites: it
// builds them once per test binary, starts servers that are stopped when
// their test ends, and waits for them across the process boundary. It is
// imported only by tests.
package proctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binDir holds the binaries Main built.
var binDir string

// Main builds pkgserve and pkgpublish into a temporary directory, runs the
// tests and removes the directory; it returns the exit code for os.Exit.
// The binaries are built without -race even when the tests run under it:
// servers are attacked as shipped, and the race detector's memory would
// defeat RSS bounds.
func Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pkgcdn-proctest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	cmd := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "github.com/pkgcdn/pkgcdn/cmd/...")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		return 1
	}
	return m.Run()
}

// Bin returns the path of a binary built by Main ("pkgserve", "pkgpublish").
func Bin(name string) string { return filepath.Join(binDir, name) }

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a server process to bind. The port is drawn at random below the
// kernel's ephemeral range where there is room: a port from that range (what
// listening on ":0" gives) can be taken, between this check and the
// server's bind, by any outgoing connection or ":0" listener of the tests
// running in parallel, which made "address already in use" flakes.
func FreeAddr(t testing.TB) string {
	t.Helper()
	lo := ephemeralStart()
	for range 100 {
		if lo < 11000 {
			break
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(10000+rand.IntN(lo-10000)))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ephemeralStart returns the first port of Linux's ephemeral range, or 0
// where it cannot be read (then FreeAddr falls back to ":0").
func ephemeralStart() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}

// Run runs a command to completion and returns its stdout; it fails the
// test with the command's output on a non-zero exit.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunErr(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return out
}

// RunErr runs a command (at most 5 minutes) and returns its stdout; on
// failure, stdout and stderr together.
func RunErr(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

// Proc is a process started by Start. Its methods are safe for concurrent use.
type Proc struct {
	Name string    // base name of the binary
	Cmd  *exec.Cmd // for signals other than SIGTERM and SIGKILL
	log  syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start starts a process that is stopped (SIGTERM, then SIGKILL after 15 s)
// when the test ends; the tail of its output is logged if the test failed.
func Start(t testing.TB, name string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: filepath.Base(name), Cmd: exec.Command(name, args...), done: make(chan struct{})}
	p.Cmd.Stdout, p.Cmd.Stderr = &p.log, &p.log
	if err := p.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.Cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("--- %s %s output:\n%s", p.Name, strings.Join(args, " "), Tail(p.Log(), 8000))
		}
	})
	return p
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Log returns everything the process wrote to stdout and stderr so far.
func (p *Proc) Log() string { return p.log.String() }

// Pid returns the process ID.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits for the exit, killing after 15 s.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.done
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Wait waits for the process to exit and returns its exit code.
func (p *Proc) Wait() int {
	<-p.done
	return p.Cmd.ProcessState.ExitCode()
}

// WaitHTTP polls url until it answers with any status, the process exits, or
// a minute passes. Polling waits for a server to bind its port: there is no
// other signal to wait on across processes.
func WaitHTTP(t testing.TB, p *Proc, url string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		if p.Exited() {
			t.Fatalf("%s exited before serving %s:\n%s", p.Name, url, Tail(p.Log(), 8000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer %s: %v", p.Name, url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Eventually polls cond (another process's state) until it holds, failing
// the test after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
