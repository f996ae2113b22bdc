package httpserve

import (
	"net/http"
	"strconv"
	"strings"
)

// Bounds of a Range header that is served as asked; beyond them the whole
// file is sent instead (RFC 9110, 14.2, lets a server ignore Range): many
// ranges multiply the response and the work, and pkg never asks for more
// than one.
const (
	MaxRanges           = 16
	MaxRangeHeaderBytes = 1024
)

// DropUnservableRange removes a Range header that the server answers with
// the whole file: one longer than MaxRangeHeaderBytes or with more than
// MaxRanges ranges. It also strips zero-length suffix ranges ("-0": the last
// zero bytes, unsatisfiable under RFC 9110), which net/http's ServeContent
// would answer as an empty part; a header left with no range goes. Master
// and edge call it before serving a file.
func DropUnservableRange(r *http.Request) {
	rg := r.Header.Get("Range")
	if rg == "" {
		return
	}
	if len(rg) > MaxRangeHeaderBytes || strings.Count(rg, ",") >= MaxRanges {
		r.Header.Del("Range")
		return
	}
	specs, ok := strings.CutPrefix(rg, "bytes=")
	if !ok {
		return
	}
	var kept []string
	dropped := false
	for _, spec := range strings.Split(specs, ",") {
		if emptySuffix(spec) {
			dropped = true
			continue
		}
		kept = append(kept, strings.TrimSpace(spec))
	}
	switch {
	case !dropped:
	case strings.Join(kept, "") == "":
		r.Header.Del("Range")
	default:
		r.Header.Set("Range", "bytes="+strings.Join(kept, ","))
	}
}

// emptySuffix reports whether a range spec asks for the last zero bytes,
// parsed as net/http parses it: split at the first "-", each side trimmed,
// the suffix length a decimal that strconv accepts ("0", "00", "+0").
func emptySuffix(spec string) bool {
	start, end, _ := strings.Cut(spec, "-")
	start, end = strings.TrimSpace(start), strings.TrimSpace(end)
	if start != "" || end == "" || end[0] == '-' {
		return false
	}
	n, err := strconv.ParseInt(end, 10, 64)
	return err == nil && n == 0
}
