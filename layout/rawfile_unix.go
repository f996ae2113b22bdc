//go:build unix

package layout

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// rawFile is a file descriptor used without *os.File. Opening a regular
// file with os.Open costs four fcntl(2) and one epoll_ctl(2) besides the
// open (Go offers every file to its poller, which refuses regular files);
// for an object copy of 35 KiB, the median package, those syscalls cost
// about as much as copying its bytes.
type rawFile struct {
	fd     int
	name   string
	direct bool // O_DIRECT is on: see writeAround
}

// openRead opens path read-only.
func openRead(path string) (*rawFile, error) {
	return rawOpen(path, unix.O_RDONLY, 0)
}

// createExcl creates path, which must not exist, for writing, with mode
// perm (less the umask).
func createExcl(path string, perm uint32) (*rawFile, error) {
	return rawOpen(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, perm)
}

func rawOpen(path string, flags int, perm uint32) (*rawFile, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, perm)
		if err == nil {
			return &rawFile{fd: fd, name: path}, nil
		}
		if !errors.Is(err, unix.EINTR) {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// Read reads from the file; 0 bytes at the end is io.EOF.
func (f *rawFile) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := unix.Read(f.fd, p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, &os.PathError{Op: "read", Path: f.name, Err: err}
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Write writes all of p (or fails): around the page cache as far as it
// can once writeAround turned that on, through it for the rest.
func (f *rawFile) Write(p []byte) (int, error) {
	done := 0
	if f.direct {
		var err error
		if done, err = f.writeDirect(p); err != nil {
			return done, err
		}
	}
	for done < len(p) {
		n, err := f.write(p[done:])
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

// write makes one write(2) of p, retried on EINTR; writing nothing is an
// io.ErrShortWrite. Errors are *os.PathError (errors.Is sees the errno).
func (f *rawFile) write(p []byte) (int, error) {
	for {
		n, err := unix.Write(f.fd, p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, &os.PathError{Op: "write", Path: f.name, Err: err}
		case n == 0:
			return 0, &os.PathError{Op: "write", Path: f.name, Err: io.ErrShortWrite}
		}
		return n, nil
	}
}

// writeAround turns on direct writes (O_DIRECT) for a new file that will
// get size bytes, if the system and the filesystem have them and size is
// at least directMin; else it does nothing and writes go through the page
// cache as before. It must be called before the first Write.
//
// Why: an upload or a copy of a set writes gigabytes the master will not
// read back soon. Written through the page cache, every byte is copied
// into pages the kernel must first find (evicting others, often the files
// being served); on the 2-core Linux VMs of our benchmarks that copy was
// the largest single cost of storing an object (45 % of the master's CPU
// in a remote publish, as it was of rsync's receiver). O_DIRECT hands the
// writer's buffer to the disk instead. The durability promise does not
// change: Commit's syncfs still makes the objects durable (it also
// flushes the disk's cache), and Recover still checks unsynced ones.
func (f *rawFile) writeAround(size int64) {
	if size < directMin || f.setDirect(true) != nil {
		return
	}
	f.direct = true
	directFiles.Add(1)
}

// writeDirect writes the longest prefix of p that direct I/O takes (p must
// start at an aligned address, and whole blocks), then turns direct I/O
// off: what is left is the file's tail (or a buffer that was not aligned),
// which goes through the page cache. A filesystem that refuses a direct
// write (EINVAL) just gets it the ordinary way. It returns the bytes
// written.
func (f *rawFile) writeDirect(p []byte) (int, error) {
	done := 0
	for k := alignedLen(p); done < k; {
		n, err := f.write(p[done:k])
		if errors.Is(err, unix.EINVAL) {
			break // refused: the rest goes the ordinary way
		}
		if err != nil {
			return done, err
		}
		done += n
		if n%directAlign != 0 {
			break // the offset is no longer aligned
		}
	}
	if done < len(p) {
		if err := f.setDirect(false); err != nil {
			return done, err
		}
		f.direct = false
	}
	return done, nil
}

// Chmod sets the file's mode bits.
func (f *rawFile) Chmod(mode fs.FileMode) error {
	if err := unix.Fchmod(f.fd, uint32(mode.Perm())); err != nil {
		return &os.PathError{Op: "chmod", Path: f.name, Err: err}
	}
	return nil
}

// Close closes the descriptor. It must be called exactly once.
func (f *rawFile) Close() error {
	// No retry on EINTR: on Linux and FreeBSD the descriptor is gone anyway.
	if err := unix.Close(f.fd); err != nil && !errors.Is(err, unix.EINTR) {
		return &os.PathError{Op: "close", Path: f.name, Err: err}
	}
	return nil
}
