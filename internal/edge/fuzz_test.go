package edge

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pkgcdn/pkgcdn/internal/route"
)

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"50GiB", "500MiB", "10G", "1.5T", "4096", "", "-1", "1e309G", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err == nil && n < 0 {
			t.Errorf("ParseSize(%q) = %d, want non-negative", s, n)
		}
	})
}

// FuzzFreshness feeds upstream caching headers (untrusted) to the RFC 9111
// code: it must not panic, and an expiry is never further than max-age allows.
func FuzzFreshness(f *testing.F) {
	f.Add("max-age=60", "", "", "")
	f.Add("s-maxage=10, max-age=0, private", "Wed, 21 Oct 2015 07:28:00 GMT", "5", "Wed, 21 Oct 2015 07:20:00 GMT")
	f.Add(`no-cache="x", max-age="99999999999999999999"`, "0", "-1", "garbage")
	f.Fuzz(func(t *testing.T, cc, expires, age, date string) {
		now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
		e := &Edge{now: func() time.Time { return now }}
		h := http.Header{}
		h.Set("Cache-Control", cc)
		h.Set("Expires", expires)
		h.Set("Age", age)
		h.Set("Date", date)
		exp := e.expires(h, now.Add(-time.Hour))
		if _, ok := parseCacheControl(h.Values("Cache-Control"))["max-age"]; ok && exp.After(now.Add((1<<31)*time.Second)) {
			t.Errorf("expiry %s beyond the max-age bound", exp)
		}
	})
}

// FuzzPlainPath checks that a request path accepted in plain mode (after
// dropping "." segments) can never climb out of the upstream's tree.
func FuzzPlainPath(f *testing.F) {
	for _, s := range []string{"/a/b", "//a/./b", "/../x", "/a/%2e%2e/b", "/.pkgcdn/sets", "/a/..", "/./", "/a\\..\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		q, err := cleanPlainPath(route.DropDotSegments(p))
		if err != nil {
			return
		}
		if !strings.HasPrefix(q, "/") {
			t.Errorf("cleanPlainPath(%q) = %q: not absolute", p, q)
		}
		for _, seg := range strings.Split(q[1:], "/") {
			if seg == ".." || seg == "." || strings.ContainsAny(seg, "\\\x00") {
				t.Errorf("cleanPlainPath(%q) = %q: segment %q", p, q, seg)
			}
		}
	})
}
