package httpserve

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// AccessLog writes one line per request in the Combined Log Format
// (Apache's and nginx's "combined"):
//
//	host - - [25/Nov/2026:03:15:00 +0000] "GET /x HTTP/1.1" 200 1234 "referer" "user-agent"
//
// The user field is always "-": Authorization headers are never logged.
// Quotes, backslashes and control bytes inside quoted fields are written as
// \xHH, so a hostile request cannot forge a line. Lines are buffered (64 KiB)
// and written at least every FlushInterval, like nginx's access_log
// buffer=, so that a busy server does not make one write(2) per request;
// Close and Reopen write what is buffered. An AccessLog is safe for
// concurrent use.
type AccessLog struct {
	path string // "" for stderr
	stop chan struct{}
	done chan struct{}

	mu sync.Mutex // guards f, w
	f  *os.File
	w  *bufio.Writer
}

// FlushInterval bounds how long a line stays in an AccessLog's buffer.
const FlushInterval = time.Second

// OpenAccessLog opens path for appending (created 0644 if missing); "-"
// means standard error. Close it to write the last lines.
func OpenAccessLog(path string) (*AccessLog, error) {
	l := &AccessLog{stop: make(chan struct{}), done: make(chan struct{})}
	if path == "-" {
		l.f = os.Stderr
	} else {
		f, err := openAppend(path)
		if err != nil {
			return nil, err
		}
		l.path, l.f = path, f
	}
	l.w = bufio.NewWriterSize(l.f, 64<<10)
	go l.flusher()
	return l, nil
}

// flusher writes the buffer every FlushInterval until Close.
func (l *AccessLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			// A failed flush drops the lines it held (see flushLocked);
			// reporting it here would have no one to go to.
			_ = l.Flush()
		}
	}
}

// Flush writes the buffered lines now. On an error they are dropped, and
// later lines are written again.
func (l *AccessLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

// flushLocked writes the buffer; l.mu is held. A bufio.Writer refuses
// every write after its first error, so one full-disk moment would end
// access logging for good: on an error the writer is reset, dropping the
// lines it held.
func (l *AccessLog) flushLocked() error {
	err := l.w.Flush()
	if err != nil {
		l.w.Reset(l.f)
	}
	return err
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Reopen writes the buffer to the old file, opens the log file again by
// its name and closes the old one, for newsyslog/logrotate after they
// renamed it (call it on SIGHUP). On error the old file stays in use. For
// standard error it only flushes.
func (l *AccessLog) Reopen() error {
	if l.path == "" {
		return l.Flush()
	}
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	ferr := l.w.Flush()
	old := l.f
	l.f = f
	l.w.Reset(f)
	l.mu.Unlock()
	return errors.Join(ferr, old.Close())
}

// Close writes the buffered lines and closes the log file (not standard
// error). The AccessLog must not be used after.
func (l *AccessLog) Close() error {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if l.path != "" {
		err = errors.Join(err, l.f.Close())
	}
	return err
}

var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Log writes the line for one request that started at start.
func (l *AccessLog) Log(r *http.Request, start time.Time, status int, bytes int64) {
	bp := lineBufs.Get().(*[]byte)
	b := appendLine((*bp)[:0], r, start, status, bytes)
	l.mu.Lock()
	// A failed access-log write must not fail the request, and logging it
	// would mean one error line per request: drop it, and reset the writer
	// (see flushLocked).
	if _, err := l.w.Write(b); err != nil {
		l.w.Reset(l.f)
	}
	l.mu.Unlock()
	*bp = b
	lineBufs.Put(bp)
}

func appendLine(b []byte, r *http.Request, start time.Time, status int, bytes int64) []byte {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	b = appendEscaped(b, host)
	b = append(b, " - - ["...)
	b = start.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, r.RequestURI)
	b = append(b, ' ')
	b = appendEscaped(b, r.Proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, bytes, 10)
	}
	b = append(b, " \""...)
	b = appendField(b, r.Referer())
	b = append(b, "\" \""...)
	b = appendField(b, r.UserAgent())
	return append(b, "\"\n"...)
}

func appendField(b []byte, s string) []byte {
	if s == "" {
		return append(b, '-')
	}
	return appendEscaped(b, s)
}

const hexDigits = "0123456789ABCDEF"

// appendEscaped appends s with '"', '\\', control bytes and bytes >= 0x7f
// written as \xHH (what nginx does), so one request is always one line.
func appendEscaped(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
