package httpserve

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// failingWriter fails every write, as a full disk does.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

func TestAccessLogWritesAgainAfterAFailedFlush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	al, err := OpenAccessLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	// One flush fails (the disk was full for a moment): a bufio.Writer
	// keeps that error for good unless it is reset.
	al.mu.Lock()
	al.w.Reset(failingWriter{})
	al.mu.Unlock()
	al.Log(httptest.NewRequest("GET", "/lost", nil), time.Now(), 200, 1)
	_ = al.Flush() // fails, unless the flusher got there first and failed
	al.Log(httptest.NewRequest("GET", "/after", nil), time.Now(), 200, 1)
	if err := al.Flush(); err != nil {
		t.Fatalf("Flush after the disk recovered: %v", err)
	}
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), "/after") {
		t.Errorf("access log after a failed flush:\n%s\nwant the /after line", b)
	}
}
