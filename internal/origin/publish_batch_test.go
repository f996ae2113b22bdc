package origin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// record is one record of a batch body: the header names hash and size,
// the bytes that follow are body.
type record struct {
	hash string
	size int
	body string
}

// rec is the record of content, named by its own hash and size.
func rec(content string) record {
	return record{hash: digest.Sum([]byte(content)).String(), size: len(content), body: content}
}

func batchBody(recs ...record) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %d\n%s", r.hash, r.size, r.body)
	}
	return b.Bytes()
}

func (f *fixture) has(content string) bool {
	f.t.Helper()
	ok, err := f.root.HasObject(digest.Sum([]byte(content)))
	if err != nil {
		f.t.Fatal(err)
	}
	return ok
}

func TestPublishBatchStoresAll(t *testing.T) {
	f := newFixture(t, nil)
	contents := []string{"first object", "", "third", strings.Repeat("big ", 50_000)}
	var recs []record
	for _, c := range contents {
		recs = append(recs, rec(c))
	}
	resp, body := f.api("POST", "batch", bytes.NewReader(batchBody(recs...)))
	if resp.StatusCode != 200 {
		t.Fatalf("batch = %s %s, want 200", resp.Status, body)
	}
	var got BatchResponse
	if err := json.Unmarshal(body, &got); err != nil || got != (BatchResponse{Stored: 4}) {
		t.Errorf("batch answer %s (%v), want stored 4, present 0", body, err)
	}
	for _, c := range contents {
		if !f.has(c) {
			t.Errorf("object of %d bytes not stored", len(c))
		}
		data, err := os.ReadFile(f.root.ObjectPath(digest.Sum([]byte(c))))
		if err != nil || string(data) != c {
			t.Errorf("object of %d bytes holds %d bytes (%v)", len(c), len(data), err)
		}
	}
	if got := f.metricValue("pkgcdn_origin_publish_objects_total"); got != 4 {
		t.Errorf("objects_total = %v, want 4", got)
	}
	if got, want := f.metricValue("pkgcdn_origin_publish_object_bytes_total"), float64(len(strings.Join(contents, ""))); got != want {
		t.Errorf("object_bytes_total = %v, want %v", got, want)
	}
}

// TestPublishBatchSkipsPresent mixes present and new objects: the present
// ones' bytes are read and dropped, so the records after them parse.
func TestPublishBatchSkipsPresent(t *testing.T) {
	f := newFixture(t, nil)
	f.putObjects(map[string]string{"b": "present one", "d": ""})
	recs := []record{rec("new one"), rec("present one"), rec(""), rec("another new one"), rec("new one")}
	resp, body := f.api("POST", "batch", bytes.NewReader(batchBody(recs...)))
	if resp.StatusCode != 200 {
		t.Fatalf("batch = %s %s, want 200", resp.Status, body)
	}
	var got BatchResponse
	if err := json.Unmarshal(body, &got); err != nil || got != (BatchResponse{Stored: 2, Present: 3}) {
		t.Errorf("batch answer %s (%v), want stored 2, present 3", body, err)
	}
	for _, c := range []string{"new one", "present one", "", "another new one"} {
		if !f.has(c) {
			t.Errorf("object %q missing", c)
		}
	}
	if n := objectFiles(t, f); n != 4 {
		t.Errorf("%d files under objects/, want 4", n)
	}
}

func TestPublishBatchRefusals(t *testing.T) {
	a, b := rec("record one"), rec("record two")
	wrong := rec("record three")
	wrong.body = "RECORD THREE"
	short := rec("record three")
	short.body = "record"
	tests := []struct {
		name       string
		body       string
		length     int64 // -1: chunked; 0: len(body)
		wantStatus int
		wantCode   string
		wantRecord int      // named in the message; 0: none
		kept       []string // objects stored
	}{
		{"wrong bytes in the third record", string(batchBody(a, b, wrong, rec("record four"))), 0, 400, "digest_mismatch", 3, []string{"record one", "record two"}},
		{"body ends within the third record", string(batchBody(a, b, short)), 0, 400, "size_mismatch", 3, []string{"record one", "record two"}},
		{"header cut off", string(batchBody(a)) + a.hash[:10], 0, 400, "truncated", 2, []string{"record one"}},
		{"no content-length", string(batchBody(a)), -1, 411, "length_required", 0, nil},
		{"over max object size", string(batchBody(a, rec(strings.Repeat("x", 1001)))), 0, 413, "too_large", 2, []string{"record one"}},
		{"bad hex", strings.ToUpper(a.hash) + " 10\nrecord one", 0, 400, "bad_request", 1, nil},
		{"short hash", a.hash[:63] + " 10\nrecord one", 0, 400, "bad_request", 1, nil},
		{"no size", a.hash + "\nrecord one", 0, 400, "bad_request", 1, nil},
		{"two spaces", a.hash + "  10\nrecord one", 0, 400, "bad_request", 1, nil},
		{"signed size", a.hash + " +10\nrecord one", 0, 400, "bad_request", 1, nil},
		{"leading zero", a.hash + " 010\nrecord one", 0, 400, "bad_request", 1, nil},
		{"CR", a.hash + " 10\r\nrecord one", 0, 400, "bad_request", 1, nil},
		{"size overflows", a.hash + " 99999999999999999999\nrecord one", 0, 400, "bad_request", 1, nil},
		{"extra bytes after a record", string(batchBody(a)) + "x" + string(batchBody(b)), 0, 400, "bad_request", 2, []string{"record one"}},
		{"empty", "", 0, 200, "", 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, func(c *Config) { c.MaxObjectSize = 1000 })
			req, err := http.NewRequest("POST", f.ts.URL+"/.pkgcdn/publish/batch", strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+testToken)
			switch tt.length {
			case -1:
				req.Body = io.NopCloser(strings.NewReader(tt.body)) // unknown length: chunked
				req.ContentLength = -1
			default:
				req.ContentLength = int64(len(tt.body))
			}
			resp, err := f.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("batch = %s %s, want %d", resp.Status, body, tt.wantStatus)
			}
			if tt.wantCode != "" {
				e := apiCode(t, body)
				if e.Code != tt.wantCode {
					t.Errorf("code %q (%s), want %q", e.Code, e.Error, tt.wantCode)
				}
				if want := fmt.Sprintf("record %d:", tt.wantRecord); tt.wantRecord > 0 && !strings.Contains(e.Error, want) {
					t.Errorf("message %q does not name %q", e.Error, want)
				}
			}
			for _, c := range tt.kept {
				if !f.has(c) {
					t.Errorf("object %q before the refused record not kept", c)
				}
			}
			if n := objectFiles(t, f); n != len(tt.kept) {
				t.Errorf("%d files under objects/, want %d (nothing of the refused record)", n, len(tt.kept))
			}
		})
	}
}

// rawRequest writes head and then body on a new connection, closes its
// sending side, and reads the response. A handler that waited for more of
// the body than sent would fail the read at the deadline instead of hanging.
func (f *fixture) rawRequest(head string, body []byte) (*http.Response, []byte) {
	f.t.Helper()
	c, err := net.Dial("tcp", f.ts.Listener.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		f.t.Fatal(err)
	}
	if _, err := io.WriteString(c, head); err != nil {
		f.t.Fatal(err)
	}
	if _, err := c.Write(body); err != nil {
		f.t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		f.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b
}

// TestPublishBatchBodyCutOff sends one record and half of the next, then
// hangs up its sending side: the first is kept, nothing of the second.
func TestPublishBatchBodyCutOff(t *testing.T) {
	f := newFixture(t, nil)
	second := strings.Repeat("0123456789", 100_000)
	full := batchBody(rec("whole record"), rec(second))
	sent := full[:len(full)-len(second)/2]
	resp, body := f.rawRequest(fmt.Sprintf("POST /.pkgcdn/publish/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		testToken, len(full)), sent)
	if e := apiCode(t, body); resp.StatusCode != 400 || e.Code != "truncated" || !strings.Contains(e.Error, "record 2:") {
		t.Errorf("cut-off batch: %s %s, want 400 truncated naming record 2", resp.Status, body)
	}
	if !f.has("whole record") {
		t.Error("the complete record before the cut was not kept")
	}
	if n := objectFiles(t, f); n != 1 {
		t.Errorf("%d files under objects/, want 1", n)
	}
}

// TestPublishBatchAuthBeforeBody sends only the headers of a batch without
// a token: the 401 must come without the body being read.
func TestPublishBatchAuthBeforeBody(t *testing.T) {
	f := newFixture(t, nil)
	for _, auth := range []string{"", "Authorization: Bearer wrong-token-0123456789abcdef\r\n"} {
		resp, body := f.rawRequest("POST /.pkgcdn/publish/batch HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Length: 1000000\r\n\r\n", nil)
		if resp.StatusCode != 401 || apiCode(t, body).Code != "unauthorized" {
			t.Errorf("batch with %q = %s %s, want 401 unauthorized", auth, resp.Status, body)
		}
	}
	if resp, body := f.api("GET", "batch", nil); resp.StatusCode != 405 {
		t.Errorf("GET batch = %s %s, want 405", resp.Status, body)
	}
}
