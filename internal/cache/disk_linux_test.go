//go:build linux

package cache

import "testing"

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v669", 6, 18, true},
		{"5.8.0", 5, 8, true},
		{"5.4", 5, 4, true},
		{"4.19.0-25-amd64", 4, 19, true},
		{"6", 0, 0, false},
		{"", 0, 0, false},
		{"x.1", 0, 0, false},
		{"6.x", 0, 0, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			major, minor, ok := parseRelease(tc.in)
			if major != tc.major || minor != tc.minor || ok != tc.ok {
				t.Errorf("parseRelease(%q) = %d, %d, %v, want %d, %d, %v", tc.in, major, minor, ok, tc.major, tc.minor, tc.ok)
			}
		})
	}
}
