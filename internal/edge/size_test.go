package edge

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want int64
		err  bool
	}{
		{name: "bytes", in: "4096", want: 4096},
		{name: "gib", in: "50GiB", want: 50 << 30},
		{name: "mib", in: "500MiB", want: 500 << 20},
		{name: "g", in: "10G", want: 10 << 30},
		{name: "lower", in: "10g", want: 10 << 30},
		{name: "kb", in: "3KB", want: 3 << 10},
		{name: "b", in: "7B", want: 7},
		{name: "tib", in: "2TiB", want: 2 << 40},
		{name: "fraction", in: "1.5G", want: 3 << 29},
		{name: "space", in: " 64 MiB ", want: 64 << 20},
		{name: "zero", in: "0", want: 0},
		{name: "empty", in: "", err: true},
		{name: "unit only", in: "GiB", err: true},
		{name: "unknown unit", in: "10X", err: true},
		{name: "negative", in: "-1G", err: true},
		{name: "overflow", in: "9999999999TiB", err: true},
		{name: "float overflow", in: "99999999999999.5TiB", err: true},
		{name: "two dots", in: "1.2.3G", err: true},
		{name: "pb", in: "1PB", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSize(tt.in)
			if tt.err {
				if !errors.Is(err, ErrBadSize) {
					t.Errorf("ParseSize(%q) = %d, %v, want ErrBadSize", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseSize(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
			}
		})
	}
}
