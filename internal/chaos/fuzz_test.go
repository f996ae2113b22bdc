package chaos

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"

	"github.com/pkgcdn/pkgcdn/internal/digest"
	"github.com/pkgcdn/pkgcdn/internal/sampleset"
)

// fuzzEdge starts a master and a manifest-aware edge on a small set for a
// fuzz target (each fuzz worker process starts its own) and returns the
// edge, the URL of the set's largest file and that file's bytes.
func fuzzEdge(f *testing.F) (*published, *server, string, []byte) {
	f.Helper()
	p := publishSet(f, 24, 8, 512*sampleset.KiB)
	edge := p.e.startEdge(f, p.e.path("cache"), []string{p.master.url})
	p.e.waitSet(f, edge.url, p.m.ID)
	ent := p.bySize()[0]
	u := fileURL(edge.url, testSet, ent.Path)
	r := get(f, u)
	if r.status != http.StatusOK || digest.Sum(r.body) != ent.SHA256 {
		f.Fatalf("GET %s: status %d", u, r.status)
	}
	return p, edge, u, r.body
}

// checkRange checks one answer to a Range request for whole: the whole file
// (200), the right slices (206, one range or multipart), or 416.
func checkRange(t *testing.T, rg string, r response, whole []byte) {
	t.Helper()
	slice := func(cr string, body []byte) {
		var a, b, size int64
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &b, &size); err != nil {
			t.Fatalf("Range %q: Content-Range %q: %v", rg, cr, err)
		}
		if size != int64(len(whole)) || a < 0 || b < a || b >= size || !bytes.Equal(body, whole[a:b+1]) {
			t.Fatalf("Range %q: Content-Range %q with %d bytes that are not that slice of the %d-byte file", rg, cr, len(body), len(whole))
		}
	}
	switch r.status {
	case http.StatusOK:
		if !bytes.Equal(r.body, whole) {
			t.Fatalf("Range %q: a 200 that is not the file", rg)
		}
	case http.StatusPartialContent:
		mt, params, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
		if mt != "multipart/byteranges" {
			slice(r.header.Get("Content-Range"), r.body)
			return
		}
		mr := multipart.NewReader(bytes.NewReader(r.body), params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Fatalf("Range %q: multipart: %v", rg, err)
			}
			b, err := io.ReadAll(part)
			if err != nil {
				t.Fatalf("Range %q: multipart part: %v", rg, err)
			}
			slice(part.Header.Get("Content-Range"), b)
		}
	case http.StatusRequestedRangeNotSatisfiable:
	default:
		t.Fatalf("Range %q: status %d", rg, r.status)
	}
}

// FuzzEdgeRange sends arbitrary Range headers to a real edge process for a
// file it may or may not have cached yet. What must hold: the whole file,
// exactly the slices asked, or 416 — never a 5xx or wrong bytes.
func FuzzEdgeRange(f *testing.F) {
	for _, s := range []string{"bytes=0-0", "bytes=100-", "bytes=-5", "bytes=0-1,3-4", "bytes=999999-",
		"bytes=abc", "bytes=5-1", "bytes=0-,0-,0-", "bytes= 1 - 2 ", "bytes=1-2,", "items=0-1"} {
		f.Add(s)
	}
	_, _, u, whole := fuzzEdge(f)
	f.Fuzz(func(t *testing.T, rg string) {
		r := do(http.MethodGet, u, nil, "Range", rg)
		if r.err != nil {
			if strings.Contains(r.err.Error(), "invalid header field value") {
				return // the client refuses to send it
			}
			t.Fatalf("Range %q: %v", rg, r.err)
		}
		checkRange(t, rg, r, whole)
	})
}

// FuzzEdgeNotify posts arbitrary push notices to a real edge process. What
// must hold: 202 or a 4xx, never a 5xx or a dropped connection, and the
// edge still answers from the set it had.
func FuzzEdgeNotify(f *testing.F) {
	f.Add([]byte(`{"set":"FreeBSD:14:amd64/latest","id":"20991231T235959Z"}`))
	f.Add([]byte(`{"set":"x","id":"19700101T000001Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte("\x00garbage"))
	f.Add([]byte(`{"set":"../../etc","id":"20250101T000000Z","extra":[1,2,3]}`))
	p, edge, _, _ := fuzzEdge(f)
	meta := fileURL(edge.url, testSet, sampleset.MetaConf)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := do(http.MethodPost, edge.url+"/.pkgcdn/notify", bytes.NewReader(body), "Content-Type", "application/json")
		if r.err != nil || (r.status != http.StatusAccepted && (r.status < 400 || r.status >= 500)) {
			t.Fatalf("notice %q: status %d, err %v", body, r.status, r.err)
		}
		if got := get(t, meta).header.Get("X-Pkgcdn-Set-Id"); got != p.m.ID.String() {
			t.Fatalf("after notice %q the edge answers from set %q, want %s", body, got, p.m.ID)
		}
	})
}
