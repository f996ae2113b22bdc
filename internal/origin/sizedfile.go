package origin

import (
	"errors"
	"io"
	"os"
	"syscall"
)

// sizedFile is an *os.File of known size for http.ServeContent, which
// seeks to the end and back to learn the size: with the size known, those
// two lseek(2) calls per request are skipped, the offset is tracked here,
// and the file is really positioned only before bytes are read from it.
// It keeps sendfile: net's sendfile path takes any syscall.Conn.
//
// sendfile reads from, and moves, the file's own offset, by a count this
// type never sees (and the copy may come in several pieces, see
// httpserve.StallChunk): once the file has been handed out by SyscallConn,
// every call goes straight to the file.
type sizedFile struct {
	f    *os.File
	size int64
	pos  int64 // offset as the caller sees it
	real int64 // the file's offset
	raw  bool  // handed to sendfile: the file's offset is the truth
}

func newSizedFile(f *os.File, size int64) *sizedFile { return &sizedFile{f: f, size: size} }

var errNegativeOffset = errors.New("seek to a negative offset")

// Seek implements io.Seeker, without a system call until the file is raw.
func (s *sizedFile) Seek(off int64, whence int) (int64, error) {
	if s.raw {
		return s.f.Seek(off, whence)
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if off < 0 {
		return 0, errNegativeOffset
	}
	s.pos = off
	return off, nil
}

// sync positions the file at pos.
func (s *sizedFile) sync() error {
	if s.raw || s.real == s.pos {
		return nil
	}
	if _, err := s.f.Seek(s.pos, io.SeekStart); err != nil {
		return err
	}
	s.real = s.pos
	return nil
}

func (s *sizedFile) Read(p []byte) (int, error) {
	if s.raw {
		return s.f.Read(p)
	}
	if err := s.sync(); err != nil {
		return 0, err
	}
	n, err := s.f.Read(p)
	s.pos += int64(n)
	s.real = s.pos
	return n, err
}

// SyscallConn positions the file and hands it to sendfile; from then on
// the file's offset is the truth.
func (s *sizedFile) SyscallConn() (syscall.RawConn, error) {
	if err := s.sync(); err != nil {
		return nil, err
	}
	s.raw = true
	return s.f.SyscallConn()
}
