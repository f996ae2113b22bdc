package origin

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestSizedFileSeekRead(t *testing.T) {
	data := []byte("0123456789abcdefghij")
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	type step struct {
		seek   int64
		whence int
		wantAt int64
		read   int    // bytes to read after the seek; 0: none
		want   string // what they are
		sysc   bool   // call SyscallConn and move the real offset behind its back
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"serve content whole", []step{{0, io.SeekEnd, 20, 0, "", false}, {0, io.SeekStart, 0, 5, "01234", false}}},
		{"range", []step{{0, io.SeekEnd, 20, 0, "", false}, {0, io.SeekStart, 0, 0, "", false}, {10, io.SeekStart, 10, 4, "abcd", false}}},
		{"current", []step{{3, io.SeekStart, 3, 2, "34", false}, {2, io.SeekCurrent, 7, 3, "789", false}}},
		{"after sendfile", []step{{5, io.SeekStart, 5, 0, "", true}, {2, io.SeekStart, 2, 3, "234", false}}},
		{"multi range", []step{{0, io.SeekStart, 0, 2, "01", false}, {15, io.SeekStart, 15, 5, "fghij", false}, {4, io.SeekStart, 4, 1, "4", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := newSizedFile(f, int64(len(data)))
			for i, st := range tt.steps {
				at, err := s.Seek(st.seek, st.whence)
				if err != nil || at != st.wantAt {
					t.Fatalf("step %d: Seek(%d, %d) = %d, %v, want %d", i, st.seek, st.whence, at, err, st.wantAt)
				}
				if st.sysc {
					rc, err := s.SyscallConn()
					if err != nil {
						t.Fatal(err)
					}
					_ = rc
					if _, err := f.Seek(17, io.SeekStart); err != nil { // as sendfile would move it
						t.Fatal(err)
					}
					if at, err := s.Seek(0, io.SeekCurrent); err != nil || at != 17 {
						t.Fatalf("step %d: after sendfile, Seek(0, SeekCurrent) = %d, %v, want the file's 17", i, at, err)
					}
				}
				if st.read > 0 {
					b := make([]byte, st.read)
					if _, err := io.ReadFull(s, b); err != nil || string(b) != st.want {
						t.Fatalf("step %d: read %q, %v, want %q", i, b, err, st.want)
					}
				}
			}
		})
	}
	f, _ := os.Open(p)
	defer f.Close()
	if _, err := newSizedFile(f, 20).Seek(-1, io.SeekStart); err == nil {
		t.Error("Seek(-1) = nil error")
	}
}
