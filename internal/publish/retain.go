package publish

import (
	"context"
	"fmt"
	"io"
	"sync"

	"golang.org/x/sync/semaphore"

	"github.com/pkgcdn/pkgcdn/internal/digest"
)

// A remote publish keeps the bytes of each small file from its hash to its
// upload, so the file is read once, not twice (the second read, its open
// and its copy were a tenth of the publisher's CPU, which the master
// shares on a small build host). Large files are read again when sent:
// they go one per PUT, and keeping them would cost too much memory.
const (
	// retainMax is the largest file kept: the largest one sent in a batch.
	retainMax = BatchObjectBytes
	// retainBudget bounds the bytes kept at once (buffer capacity): when
	// it is spent, hashing waits for uploads to give some back.
	retainBudget = 64 << 20
)

// Buffers come in powers of two from retainClassMin to retainMax (2^18),
// each size pooled.
const (
	retainClassMin = 4 << 10
	retainClasses  = 18 - 12 + 1
)

// retainer hands out the buffers that keep small files' bytes, within
// retainBudget. It is safe for concurrent use.
type retainer struct {
	budget *semaphore.Weighted
	// flush is a quarter of the budget: a missing query goes out early
	// once the files waiting for it keep this much, so kept bytes always
	// move on to uploads, which give them back (a budget spent on files
	// no query names would wait forever).
	flush int
	pools [retainClasses]sync.Pool
}

// newRetainer returns a retainer of budget bytes (≤ 0: retainBudget), at
// least two buffers of the largest class: whatever the files of the query
// not yet sent keep (under flush), a largest one must still fit.
func newRetainer(budget int64) *retainer {
	if budget <= 0 {
		budget = retainBudget
	}
	budget = max(budget, 2*retainMax)
	return &retainer{budget: semaphore.NewWeighted(budget), flush: int(budget / 4)}
}

// retainClass returns the pool index and buffer size for n bytes (n ≤ retainMax).
func retainClass(n int64) (int, int) {
	i, size := 0, retainClassMin
	for int64(size) < n {
		size <<= 1
		i++
	}
	return i, size
}

// get waits until a buffer for n bytes fits the budget (or ctx is done)
// and returns it, n long.
func (r *retainer) get(ctx context.Context, n int64) ([]byte, error) {
	i, size := retainClass(n)
	if err := r.budget.Acquire(ctx, int64(size)); err != nil {
		return nil, err
	}
	if b, ok := r.pools[i].Get().(*[]byte); ok {
		return (*b)[:n], nil
	}
	return make([]byte, n, size), nil
}

// put gives back a buffer from get (nil is ignored) for reuse.
func (r *retainer) put(b []byte) {
	if b == nil {
		return
	}
	i, size := retainClass(int64(cap(b)))
	b = b[:0]
	r.pools[i].Put(&b)
	r.budget.Release(int64(size))
}

// drop gives back the budget of a buffer from get (nil is ignored) but not
// the buffer: after an upload the master may have answered before reading
// it all (a failure, an object it holds already), the HTTP transport may
// still be reading the request body from it, so it must not be filled
// again; the garbage collector takes it.
func (r *retainer) drop(b []byte) {
	if b == nil {
		return
	}
	_, size := retainClass(int64(cap(b)))
	r.budget.Release(int64(size))
}

// hashKept reads f, which must be 1 to retainMax bytes, whole into a
// buffer of r, hashes it and keeps the buffer in f.data. It checks, as
// hashFile does, that f did not change while read; on any error it keeps
// nothing.
func hashKept(ctx context.Context, f *File, r *retainer, open func(string) (io.ReadCloser, error), progress func(int64)) (int64, error) {
	buf, err := r.get(ctx, f.Size)
	if err != nil {
		return 0, err
	}
	n, err := readWhole(f, open, buf)
	if err == nil {
		err = checkUnchanged(f, n)
	}
	if err != nil {
		r.put(buf)
		return n, err
	}
	f.SHA256 = digest.Sum(buf)
	f.data = buf
	if progress != nil {
		progress(n)
	}
	return n, nil
}

// readWhole reads f into buf, which is f.Size long, and returns the bytes
// read: fewer if the file ended early (checkUnchanged then refuses it; a
// file that grew is refused by its stat).
func readWhole(f *File, open func(string) (io.ReadCloser, error), buf []byte) (int64, error) {
	rc, err := open(f.Abs)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.Path, err)
	}
	n, err := io.ReadFull(rc, buf)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	if cerr := rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return int64(n), fmt.Errorf("%s: read: %w", f.Path, err)
	}
	return int64(n), nil
}
