package logsetup

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	tests := []struct {
		format, level string
		wantErr       string // substring; "" for none
		debugShown    bool
	}{
		{"text", "info", "", false},
		{"text", "DEBUG", "", true},
		{"json", "warn", "", false},
		{"xml", "info", "--log-format", false},
		{"text", "loud", "--log-level", false},
	}
	for _, tc := range tests {
		t.Run(tc.format+"/"+tc.level, func(t *testing.T) {
			var buf bytes.Buffer
			log, err := New(&buf, tc.format, tc.level)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New = %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("quiet")
			log.Error("loud", "k", "v")
			out := buf.String()
			if strings.Contains(out, "quiet") != tc.debugShown {
				t.Errorf("debug line shown: %v, want %v:\n%s", !tc.debugShown, tc.debugShown, out)
			}
			if !strings.Contains(out, "loud") {
				t.Errorf("error line missing:\n%s", out)
			}
			if tc.format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					if !json.Valid([]byte(line)) {
						t.Errorf("not JSON: %s", line)
					}
				}
			}
		})
	}
}
