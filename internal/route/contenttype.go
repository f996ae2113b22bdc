package route

import (
	"path"
	"strings"
)

// contentTypes is the fixed table of Content-Types by extension, the same on
// the master and on every edge: never the host's mime.types (the same file
// must get the same header everywhere) and never sniffed (an edge starts a
// response before the first bytes arrive). The slices are header values
// shared by every response: never modify them.
var contentTypes = map[string][]string{
	".conf": {"text/plain; charset=utf-8"},
	".txt":  {"text/plain; charset=utf-8"},
	".asc":  {"text/plain; charset=utf-8"},
	".json": {"application/json"},
	".xz":   {"application/x-xz"},
	".txz":  {"application/x-xz"},
	".zst":  {"application/zstd"},
	".tzst": {"application/zstd"},
	".gz":   {"application/gzip"},
	".tgz":  {"application/gzip"},
	".html": {"text/html; charset=utf-8"},
}

var octetStream = []string{"application/octet-stream"}

// ContentTypeHeader returns the Content-Type of the file at p as a header
// value (h["Content-Type"] = v, no allocation). The slice is shared: callers
// must not modify it. Unknown extensions are application/octet-stream.
func ContentTypeHeader(p string) []string {
	ext := path.Ext(p)
	if ct, ok := contentTypes[ext]; ok {
		return ct
	}
	if ct, ok := contentTypes[strings.ToLower(ext)]; ok {
		return ct
	}
	return octetStream
}

// ContentType returns the Content-Type of the file at p.
func ContentType(p string) string { return ContentTypeHeader(p)[0] }
