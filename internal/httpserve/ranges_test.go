package httpserve

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDropUnservableRange(t *testing.T) {
	tests := []struct {
		name, rg string
		keep     bool
		want     string // if not empty, the header left
	}{
		{"no range", "", false, ""},
		{"resume", "bytes=123-", true, ""},
		{"suffix", "bytes=-500", true, ""},
		{"two ranges", "bytes=0-1,5-9", true, ""},
		{"zero-length suffix", "bytes=-0", false, ""},
		{"zero-length suffixes", "bytes=-00, -0", false, ""},
		{"zero-length suffix among others", "bytes=-0,0-1", true, "bytes=0-1"},
		{"zero-length suffix after a suffix", "bytes=-1, -00", true, "bytes=-1"},
		{"suffix of ten", "bytes=-10", true, "bytes=-10"},
		{"zero-length suffix with a space", "bytes=- 0", false, ""},
		{"zero-length suffix with a plus", "bytes=-+0", false, ""},
		{"negative suffix left to net/http", "bytes=--0", true, "bytes=--0"},
		{"zero-length suffix after an empty spec", "bytes=,-0", false, ""},
		{"only empty specs", "bytes=,", true, ""},
		{"too many ranges", "bytes=" + strings.Repeat("0-1,", MaxRanges) + "0-1", false, ""},
		{"too long", "bytes=0-" + strings.Repeat("9", MaxRangeHeaderBytes), false, ""},
		{"other unit", "items=-0", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/x", nil)
			if tt.rg != "" {
				r.Header.Set("Range", tt.rg)
			}
			DropUnservableRange(r)
			got := r.Header.Get("Range")
			if (got != "") != tt.keep || (tt.want != "" && got != tt.want) {
				t.Errorf("DropUnservableRange(%q): Range %q, want kept=%v %q", tt.rg, got, tt.keep, tt.want)
			}
		})
	}
}
